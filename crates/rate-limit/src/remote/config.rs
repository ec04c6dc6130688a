//! [`RedisConfig`]: where the shared state lives and what to do without it. Plain data, compiled
//! with or without the `redis` feature, so a configuration file reads the same everywhere.

use std::time::Duration;

use palisade_core::ConfigError;

/// What the limiter does without an answer from Redis: while its circuit breaker is open, and
/// for a request whose own call failed or missed the deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum FailMode {
    /// Keep limiting, in this process, at `local_share` of each policy (the default): a Redis
    /// outage neither becomes an outage of the service nor removes the protection.
    #[default]
    Open,
    /// Refuse every request the limits apply to with `503 Service Unavailable` and
    /// `Retry-After`, for limits that must never be exceeded (a paid quota, say). A single late
    /// call refuses its request too: closed means no request passes unchecked.
    Closed,
}

impl FailMode {
    /// The name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// The Redis backend of the rate limiter: one limit for every replica
/// ([`RateLimitBuilder::redis`](crate::RateLimitBuilder::redis), `[rate_limit.redis]`).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `url` | none (required) | `redis://[user:password@]host:port[/db]`, or `unix:///path` |
/// | `deadline` | 0.005 s | the longest a request waits for Redis; then it is decided locally and the call counts as a failure |
/// | `connect_timeout` | 1 s | one connection attempt (in the background, never on a request) |
/// | `key_prefix` | `palisade:rl` | Redis keys are `{key_prefix}:{policy}:{SHA-1 of the key}` |
/// | `fail_mode` | `open` | while Redis is unreachable: `open` limits locally at `local_share`, `closed` answers 503 |
/// | `local_share` | 1.0 | the share of each policy's rate and burst one replica enforces on its own while failing open; `1 / replicas` keeps the global limit exact, 1.0 never refuses a client only because Redis is down |
/// | `failures_to_open` | 3 | consecutive failed or late calls that open the breaker |
/// | `open_for` | 1 s | how long the breaker stays open before a background `PING` probes Redis |
/// | `lease_size` | 0 (off) | requests a replica reserves at once for a hot key, then spends without calling Redis |
/// | `lease_ttl` | 0.1 s | how long a lease may be spent; also what makes a key hot (two checks within it) |
///
/// With leases on, every request a replica admits from a lease was charged in Redis at most
/// `lease_ttl` before, so over any window a policy's key gets at most `rate × lease_ttl` more
/// than the policy allows. A replica holds at most one lease (`lease_size - 1` unspent
/// requests) per combination of keys of a request, and asks for one lease at a time.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server's URL.
    pub url: String,
    /// The longest a request waits for Redis.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub deadline: Duration,
    /// The longest one connection attempt may take.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub connect_timeout: Duration,
    /// The prefix of every key.
    pub key_prefix: String,
    /// What to do while Redis is unreachable.
    pub fail_mode: FailMode,
    /// The share of each policy one replica enforces while failing open.
    pub local_share: f64,
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long the breaker stays open before probing.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub open_for: Duration,
    /// Requests reserved at once for a hot key (0 or 1: off).
    pub lease_size: u32,
    /// How long a lease lasts.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub lease_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            deadline: Duration::from_millis(5),
            connect_timeout: Duration::from_secs(1),
            key_prefix: "palisade:rl".to_owned(),
            fail_mode: FailMode::Open,
            local_share: 1.0,
            failures_to_open: 3,
            open_for: Duration::from_secs(1),
            lease_size: 0,
            lease_ttl: Duration::from_millis(100),
        }
    }
}

/// The longest deadline accepted: beyond it the limiter is slower than what it protects.
const MAX_DEADLINE: Duration = Duration::from_secs(1);
/// The largest lease: beyond it one replica could starve the others of a whole burst.
const MAX_LEASE: u32 = 10_000;

impl RedisConfig {
    /// The defaults, with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Checks the configuration (the URL's syntax is checked when the layer is built).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: an empty URL, a deadline of zero or over 1 s, a zero
    /// connect timeout, an empty prefix, a local share outside (0, 1], zero failures to open, a
    /// zero open time, a lease over 10 000, or a lease TTL of zero or over 60 s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(ConfigError::new(
                "url",
                "set the Redis URL (redis://host:port)",
            ));
        }
        if self.deadline.is_zero() || self.deadline > MAX_DEADLINE {
            return Err(ConfigError::new(
                "deadline",
                format!("must be above 0 and at most 1 s, got {:?}", self.deadline),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new("connect_timeout", "must be above 0"));
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "key_prefix",
                "must be non-empty, without whitespace",
            ));
        }
        if !(self.local_share > 0.0 && self.local_share <= 1.0) {
            return Err(ConfigError::new(
                "local_share",
                format!("must be above 0 and at most 1, got {}", self.local_share),
            ));
        }
        if self.failures_to_open == 0 {
            return Err(ConfigError::new("failures_to_open", "must be at least 1"));
        }
        if self.open_for.is_zero() || self.open_for > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "open_for",
                "must be above 0 and at most an hour",
            ));
        }
        if self.lease_size > MAX_LEASE {
            return Err(ConfigError::new(
                "lease_size",
                format!("must be at most {MAX_LEASE}, got {}", self.lease_size),
            ));
        }
        if self.lease_ttl.is_zero() || self.lease_ttl > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "lease_ttl",
                "must be above 0 and at most 60 s",
            ));
        }
        Ok(())
    }

    /// Whether leases are on.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn leases(&self) -> bool {
        self.lease_size > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_once_a_url_is_set() {
        assert_eq!(RedisConfig::default().validate().unwrap_err().key(), "url");
        RedisConfig::new("redis://127.0.0.1:6379")
            .validate()
            .unwrap();
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let base = RedisConfig::new("redis://127.0.0.1:6379");
        let cases: [(&str, RedisConfig); 8] = [
            (
                "deadline",
                RedisConfig {
                    deadline: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "deadline",
                RedisConfig {
                    deadline: Duration::from_secs(5),
                    ..base.clone()
                },
            ),
            (
                "local_share",
                RedisConfig {
                    local_share: 0.0,
                    ..base.clone()
                },
            ),
            (
                "local_share",
                RedisConfig {
                    local_share: f64::NAN,
                    ..base.clone()
                },
            ),
            (
                "failures_to_open",
                RedisConfig {
                    failures_to_open: 0,
                    ..base.clone()
                },
            ),
            (
                "lease_size",
                RedisConfig {
                    lease_size: 20_000,
                    ..base.clone()
                },
            ),
            (
                "lease_ttl",
                RedisConfig {
                    lease_ttl: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "key_prefix",
                RedisConfig {
                    key_prefix: "a b".into(),
                    ..base.clone()
                },
            ),
        ];
        for (key, config) in cases {
            assert_eq!(config.validate().unwrap_err().key(), key, "{config:?}");
        }
    }
}
