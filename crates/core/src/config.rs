//! Configuration vocabulary shared by every layer.

use std::{borrow::Cow, fmt};

/// A configuration value that makes no sense, named by its key so that start-up errors point at
/// the line to fix (`invalid concurrency.low_water: must not exceed high_water (0.9 > 0.8)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: Cow<'static, str>,
    problem: Cow<'static, str>,
}

impl ConfigError {
    /// An error about `key` (a dotted configuration path) with a human-readable `problem`.
    pub fn new(key: impl Into<Cow<'static, str>>, problem: impl Into<Cow<'static, str>>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The configuration key at fault.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The same error under an outer key, as in `concurrency` + `max_in_flight` →
    /// `concurrency.max_in_flight`.
    #[must_use]
    pub fn within(self, prefix: &str) -> Self {
        Self {
            key: format!("{prefix}.{}", self.key).into(),
            problem: self.problem,
        }
    }
}

/// Checks `name`, the `name` key of a named instance (a bulkhead, a WebSocket route) that becomes a
/// metric label: 1 to 64 characters of `[A-Za-z0-9_.-]`, so that it is safe in every exposition
/// format and bounded in cardinality by configuration.
///
/// ```
/// use palisade_core::check_name;
///
/// assert!(check_name("api.v2").is_ok());
/// assert_eq!(check_name("a b").unwrap_err().key(), "name");
/// assert!(check_name("").is_err());
/// ```
///
/// # Errors
///
/// A [`ConfigError`] for the key `name` saying what is allowed.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            "name",
            format!("{name:?} must be 1 to 64 characters of [A-Za-z0-9_.-]"),
        ))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Whether a layer enforces its decisions or only observes them (shadow mode).
///
/// In [`ObserveOnly`](Self::ObserveOnly) mode a layer takes every decision, counts it in its
/// metrics and logs it, but lets the request through; operators use it to switch a layer on
/// safely and to tune thresholds against real traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum EnforcementMode {
    /// Decisions are enforced (the default).
    #[default]
    Enforce,
    /// Decisions are recorded but never enforced.
    ObserveOnly,
}

impl EnforcementMode {
    /// Whether decisions are enforced.
    pub const fn enforces(self) -> bool {
        matches!(self, Self::Enforce)
    }

    /// The value of the `mode` label that every Palisade counter of decisions carries: `enforce`,
    /// or `observe_only` for what observe-only mode would have refused (and served), so one
    /// selector (`mode="enforce"`) separates the two in every crate's metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::ObserveOnly => "observe_only",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_key() {
        let err = ConfigError::new("low_water", "must not exceed high_water").within("concurrency");
        assert_eq!(err.key(), "concurrency.low_water");
        assert_eq!(
            err.to_string(),
            "invalid concurrency.low_water: must not exceed high_water"
        );
    }

    #[test]
    fn default_mode_enforces() {
        assert!(EnforcementMode::default().enforces());
        assert!(!EnforcementMode::ObserveOnly.enforces());
    }
}
