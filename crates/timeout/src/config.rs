//! Configuration: plain data with documented defaults, validated once when the layer is built.

use std::time::Duration;

use http::StatusCode;
use palisade_core::{ConfigError, EnforcementMode};

/// The longest timeout accepted: a day. A request that may legitimately wait longer for its
/// response headers should not be behind a request timeout at all.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Configuration of the [`TimeoutLayer`](crate::TimeoutLayer).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `timeout` | 30 s | a request whose response has not started this long after `call` is answered `status` and its handler dropped |
/// | `status` | 503 | the status of that answer (any 4xx or 5xx; 504 behind a gateway, 408 to blame the client) |
/// | `mode` | enforce | `observe_only` counts and logs requests that overrun, and lets them finish |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// The longest a request may take to produce its response (headers); the body is not timed.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub timeout: Duration,
    /// The status of the answer to a request that timed out.
    pub status: u16,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            status: 503,
            mode: EnforcementMode::Enforce,
        }
    }
}

impl TimeoutConfig {
    /// Checks the configuration and returns the status as a [`StatusCode`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: a zero timeout or one over [`MAX_TIMEOUT`], a status
    /// outside 400-599.
    pub fn validate(&self) -> Result<StatusCode, ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be more than 0 seconds"));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(ConfigError::new("timeout", "must be at most one day"));
        }
        match StatusCode::from_u16(self.status) {
            Ok(status) if status.is_client_error() || status.is_server_error() => Ok(status),
            _ => Err(ConfigError::new(
                "status",
                format!("{} is not a 4xx or 5xx status", self.status),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            TimeoutConfig::default().validate().unwrap(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (Duration::ZERO, 503, "timeout"),
            (MAX_TIMEOUT + Duration::from_millis(1), 503, "timeout"),
            (Duration::from_secs(1), 200, "status"),
            (Duration::from_secs(1), 302, "status"),
            (Duration::from_secs(1), 600, "status"),
            (Duration::from_secs(1), 99, "status"),
        ];
        for (timeout, status, key) in cases {
            let config = TimeoutConfig {
                timeout,
                status,
                ..TimeoutConfig::default()
            };
            assert_eq!(config.validate().unwrap_err().key(), key, "{config:?}");
        }
    }

    #[test]
    fn the_longest_timeout_and_any_error_status_are_accepted() {
        for status in [400, 408, 499, 500, 504, 599] {
            let config = TimeoutConfig {
                timeout: MAX_TIMEOUT,
                status,
                ..TimeoutConfig::default()
            };
            assert_eq!(config.validate().unwrap().as_u16(), status);
        }
    }
}
