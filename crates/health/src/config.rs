//! Configuration: plain data with documented defaults and validation.

use std::{borrow::Cow, time::Duration};

use palisade_core::ConfigError;

/// What readiness does while the shared [`OverloadState`](palisade_core::OverloadState) says the server is overloaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum OverloadPolicy {
    /// Readiness fails (503) while overloaded, so the load balancer sends new traffic elsewhere
    /// (the default). Liveness never looks at overload.
    #[default]
    Fail,
    /// Observe-only: readiness reports `warn` with 200 and the overload in its details, but the
    /// instance stays in rotation.
    Warn,
    /// Overload is neither reported nor acted on by readiness.
    Ignore,
}

/// Configuration of the [`HealthLayer`](crate::HealthLayer) (checks are added on the
/// [builder](crate::HealthBuilder), as code).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `live_path` | `/health/live` | liveness probe path |
/// | `ready_path` | `/health/ready` | readiness probe path |
/// | `startup_path` | `/health/startup` | startup probe path |
/// | `kubernetes_aliases` | false | also answer `/livez` and `/readyz` |
/// | `include_details` | false | bodies carry `checks`, `output` and the service fields; off: `{"status":"..."}` only |
/// | `overload` | `fail` | readiness while overloaded: `fail` (503), `warn` (observe-only, 200), `ignore` |
/// | `close_connections_while_draining` | true | while draining, pass-through responses carry `Connection: close` |
/// | `service_id`, `version`, `release_id`, `description` | none | the draft's top-level fields, shown with details |
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Liveness probe path.
    pub live_path: Cow<'static, str>,
    /// Readiness probe path.
    pub ready_path: Cow<'static, str>,
    /// Startup probe path.
    pub startup_path: Cow<'static, str>,
    /// Also answer `/livez` (liveness) and `/readyz` (readiness), the Kubernetes API server's
    /// names.
    pub kubernetes_aliases: bool,
    /// Whether probe bodies carry details (check results, outputs, version). Off by default:
    /// probe endpoints are usually reachable by more people than the logs are.
    pub include_details: bool,
    /// What readiness does while overloaded.
    pub overload: OverloadPolicy,
    /// While draining, add `Connection: close` to pass-through responses, so that keep-alive
    /// clients reconnect (to another instance) instead of staying on this one until it stops.
    pub close_connections_while_draining: bool,
    /// The draft's `serviceId`.
    pub service_id: Option<String>,
    /// The draft's `version` (of the service's public interface).
    pub version: Option<String>,
    /// The draft's `releaseId` (of the implementation).
    pub release_id: Option<String>,
    /// The draft's `description`.
    pub description: Option<String>,
}

/// The default liveness path.
pub const DEFAULT_LIVE_PATH: &str = "/health/live";
/// The default readiness path.
pub const DEFAULT_READY_PATH: &str = "/health/ready";
/// The default startup path.
pub const DEFAULT_STARTUP_PATH: &str = "/health/startup";
/// The liveness alias.
pub const LIVEZ: &str = "/livez";
/// The readiness alias.
pub const READYZ: &str = "/readyz";

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            live_path: Cow::Borrowed(DEFAULT_LIVE_PATH),
            ready_path: Cow::Borrowed(DEFAULT_READY_PATH),
            startup_path: Cow::Borrowed(DEFAULT_STARTUP_PATH),
            kubernetes_aliases: false,
            include_details: false,
            overload: OverloadPolicy::Fail,
            close_connections_while_draining: true,
            service_id: None,
            version: None,
            release_id: None,
            description: None,
        }
    }
}

impl HealthConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a path that does not start with `/`, contains a query,
    /// fragment, whitespace or control character, or is longer than 256 bytes; two probes on
    /// one path (aliases included); an empty service field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let paths = [
            ("live_path", self.live_path.as_ref()),
            ("ready_path", self.ready_path.as_ref()),
            ("startup_path", self.startup_path.as_ref()),
        ];
        for (key, path) in paths {
            let ok = path.starts_with('/')
                && path.len() <= 256
                && path
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
            if !ok {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "{path:?} must be an absolute path (/...) of visible ASCII without ? or #, at most 256 bytes"
                    ),
                ));
            }
        }
        let mut all: Vec<(&str, &str)> = paths.to_vec();
        if self.kubernetes_aliases {
            all.push(("kubernetes_aliases", LIVEZ));
            all.push(("kubernetes_aliases", READYZ));
        }
        for (i, (key, path)) in all.iter().enumerate() {
            if let Some((other, _)) = all[..i].iter().find(|(_, p)| p == path) {
                return Err(ConfigError::new(
                    *key,
                    format!("{path:?} is already the path of {other}"),
                ));
            }
        }
        for (key, value) in [
            ("service_id", &self.service_id),
            ("version", &self.version),
            ("release_id", &self.release_id),
            ("description", &self.description),
        ] {
            if value.as_ref().is_some_and(String::is_empty) {
                return Err(ConfigError::new(key, "must not be empty when set"));
            }
        }
        Ok(())
    }
}

/// Configuration of the shutdown sequence ([`Drain`](crate::Drain)).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `propagation_delay` | 5 s | after the signal: readiness fails, the server still serves, so that load balancers and kube-proxy stop sending before it stops accepting |
/// | `deadline` | 20 s | after it stops accepting: how long in-flight requests may take before the server returns anyway |
///
/// The pod's `terminationGracePeriodSeconds` must cover both, plus a margin for the process to
/// exit: with the defaults 25 s, inside Kubernetes' default of 30 s. See
/// [`DrainConfig::min_termination_grace_period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct DrainConfig {
    /// Time between failing readiness and no longer accepting connections.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub propagation_delay: Duration,
    /// Time in-flight requests get once the server no longer accepts connections.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub deadline: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            propagation_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(20),
        }
    }
}

/// The longest delay or deadline accepted: more is a unit mistake (milliseconds as seconds).
pub const MAX_DRAIN_DURATION: Duration = Duration::from_secs(3600);

impl DrainConfig {
    /// The shortest `terminationGracePeriodSeconds` that lets the whole sequence run:
    /// propagation delay plus deadline. Add a few seconds of margin for the process to exit.
    pub fn min_termination_grace_period(&self) -> Duration {
        self.propagation_delay.saturating_add(self.deadline)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the deadline is zero, or either duration exceeds an hour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.deadline.is_zero() {
            return Err(ConfigError::new(
                "drain.deadline",
                "must be above zero: in-flight requests need some time",
            ));
        }
        for (key, value) in [
            ("drain.propagation_delay", self.propagation_delay),
            ("drain.deadline", self.deadline),
        ] {
            if value > MAX_DRAIN_DURATION {
                return Err(ConfigError::new(
                    key,
                    format!("{} s is more than an hour", value.as_secs()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = HealthConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.live_path, "/health/live");
        assert_eq!(config.ready_path, "/health/ready");
        assert_eq!(config.startup_path, "/health/startup");
        assert!(!config.include_details);
        let drain = DrainConfig::default();
        assert!(drain.validate().is_ok());
        assert_eq!(
            drain.min_termination_grace_period(),
            Duration::from_secs(25)
        );
    }

    #[test]
    fn nonsense_is_an_error_naming_the_field() {
        let key = |c: HealthConfig| c.validate().unwrap_err().key().to_owned();
        let with = |f: fn(&mut HealthConfig)| {
            let mut c = HealthConfig::default();
            f(&mut c);
            c
        };
        assert_eq!(key(with(|c| c.live_path = "health".into())), "live_path");
        assert_eq!(key(with(|c| c.ready_path = "/a b".into())), "ready_path");
        assert_eq!(key(with(|c| c.ready_path = "/r?x=1".into())), "ready_path");
        assert_eq!(
            key(with(|c| c.startup_path = "/health/live".into())),
            "startup_path"
        );
        assert_eq!(
            key(with(|c| {
                c.live_path = "/livez".into();
                c.kubernetes_aliases = true;
            })),
            "kubernetes_aliases"
        );
        assert_eq!(key(with(|c| c.version = Some(String::new()))), "version");

        let drain = |propagation_delay, deadline| {
            DrainConfig {
                propagation_delay,
                deadline,
            }
            .validate()
            .unwrap_err()
            .key()
            .to_owned()
        };
        assert_eq!(drain(Duration::ZERO, Duration::ZERO), "drain.deadline");
        assert_eq!(
            drain(Duration::from_secs(5000), Duration::from_secs(1)),
            "drain.propagation_delay"
        );
        assert!(
            DrainConfig {
                propagation_delay: Duration::ZERO,
                deadline: Duration::from_secs(1)
            }
            .validate()
            .is_ok()
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn configuration_is_data() {
        let config: HealthConfig = serde_json::from_str(
            r#"{"ready_path": "/ready", "kubernetes_aliases": true, "include_details": true,
                "overload": "warn", "version": "2"}"#,
        )
        .unwrap();
        assert_eq!(config.ready_path, "/ready");
        assert_eq!(config.live_path, "/health/live", "defaults fill the rest");
        assert!(config.kubernetes_aliases && config.include_details);
        assert_eq!(config.overload, OverloadPolicy::Warn);
        assert_eq!(config.version.as_deref(), Some("2"));
        assert!(config.validate().is_ok());
        assert!(serde_json::from_str::<HealthConfig>(r#"{"raedy_path": "/r"}"#).is_err());

        let drain: DrainConfig =
            serde_json::from_str(r#"{"propagation_delay": 2.5, "deadline": 40}"#).unwrap();
        assert_eq!(drain.propagation_delay, Duration::from_millis(2500));
        assert_eq!(drain.deadline, Duration::from_secs(40));

        let schedule: crate::Schedule =
            serde_json::from_str(r#"{"on_demand": {"ttl": 1}}"#).unwrap();
        assert_eq!(
            schedule,
            crate::Schedule::OnDemand {
                ttl: Duration::from_secs(1)
            }
        );
    }
}
