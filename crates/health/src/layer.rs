//! [`HealthLayer`] and its builder.

use std::{borrow::Cow, sync::Arc};

use palisade_core::{ConfigError, OverloadState};
use tower_layer::Layer;

use crate::{
    Check, HealthConfig, HealthHandle, OverloadPolicy,
    report::ServiceFields,
    runner::CheckEntry,
    service::Health,
    state::{Paths, Shared, SharedParts},
};

/// Answers the probe paths itself and passes every other request to the inner service; see the
/// [crate docs](crate).
///
/// The state (lifecycle flags, check caches, background tasks) is created once, when the layer
/// is built; every service it produces and every clone shares it.
#[derive(Clone)]
pub struct HealthLayer {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for HealthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthLayer")
            .field("live", &self.shared.paths.live)
            .field("ready", &self.shared.paths.ready)
            .field("startup", &self.shared.paths.startup)
            .field("liveness_checks", &self.shared.liveness.len())
            .field("readiness_checks", &self.shared.readiness.len())
            .finish_non_exhaustive()
    }
}

impl Default for HealthLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthLayer {
    /// The probes with the default configuration and no checks, reading
    /// [`OverloadState::global`].
    ///
    /// # Panics
    ///
    /// Never: the default configuration is valid (a unit test checks it).
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// The probes of `config`, with no checks, reading [`OverloadState::global`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an invalid configuration ([`HealthConfig::validate`]).
    pub fn from_config(config: HealthConfig) -> Result<Self, ConfigError> {
        HealthBuilder::from(config).build()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> HealthBuilder {
        HealthBuilder::from(HealthConfig::default())
    }

    /// The application's controls: [`mark_started`](HealthHandle::mark_started),
    /// [`begin_drain`](HealthHandle::begin_drain), reports.
    pub fn handle(&self) -> HealthHandle {
        HealthHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Health::new(inner, Arc::clone(&self.shared))
    }
}

/// Builds a [`HealthLayer`]; every setter documents its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct HealthBuilder {
    config: HealthConfig,
    liveness: Vec<Check>,
    readiness: Vec<Check>,
    overload: Option<OverloadState>,
}

/// A builder starting from `config` (for example one read from a file), to add checks and the
/// overload state to.
impl From<HealthConfig> for HealthBuilder {
    fn from(config: HealthConfig) -> Self {
        Self {
            config,
            liveness: Vec::new(),
            readiness: Vec::new(),
            overload: None,
        }
    }
}

impl HealthBuilder {
    /// Liveness probe path. Default `/health/live`.
    pub fn live_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.config.live_path = path.into();
        self
    }

    /// Readiness probe path. Default `/health/ready`.
    pub fn ready_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.config.ready_path = path.into();
        self
    }

    /// Startup probe path. Default `/health/startup`.
    pub fn startup_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.config.startup_path = path.into();
        self
    }

    /// Also answer `/livez` and `/readyz`. Default off.
    pub fn kubernetes_aliases(mut self, enabled: bool) -> Self {
        self.config.kubernetes_aliases = enabled;
        self
    }

    /// Bodies with `checks`, `output` and the service fields. Default off (`{"status":"..."}`).
    pub fn include_details(mut self, enabled: bool) -> Self {
        self.config.include_details = enabled;
        self
    }

    /// What readiness does while overloaded. Default [`OverloadPolicy::Fail`].
    pub fn overload_policy(mut self, policy: OverloadPolicy) -> Self {
        self.config.overload = policy;
        self
    }

    /// Read overload from `state` instead of [`OverloadState::global`]: pass the state the
    /// limiters publish into.
    pub fn overload_state(mut self, state: OverloadState) -> Self {
        self.overload = Some(state);
        self
    }

    /// Observe-only: readiness reports overload as `warn` and stays `200`
    /// (`overload_policy(OverloadPolicy::Warn)`); failing checks still fail it.
    pub fn observe_only(self) -> Self {
        self.overload_policy(OverloadPolicy::Warn)
    }

    /// `Connection: close` on pass-through responses while draining. Default on.
    pub fn close_connections_while_draining(mut self, enabled: bool) -> Self {
        self.config.close_connections_while_draining = enabled;
        self
    }

    /// The draft's `serviceId`, shown with details. Default none.
    pub fn service_id(mut self, id: impl Into<String>) -> Self {
        self.config.service_id = Some(id.into());
        self
    }

    /// The draft's `version`, shown with details. Default none.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.config.version = Some(version.into());
        self
    }

    /// The draft's `releaseId`, shown with details. Default none.
    pub fn release_id(mut self, release: impl Into<String>) -> Self {
        self.config.release_id = Some(release.into());
        self
    }

    /// The draft's `description`, shown with details. Default none.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.config.description = Some(description.into());
        self
    }

    /// Adds a readiness check: should this instance receive traffic? Dependencies the instance
    /// cannot serve without belong here (a database it owns); a dependency shared by every
    /// instance is better [`non_critical`](Check::non_critical), or all instances leave the load
    /// balancer together when it fails.
    pub fn readiness_check(mut self, check: Check) -> Self {
        self.readiness.push(check);
        self
    }

    /// Adds a liveness check: **only for unrecoverable local states** (a deadlocked worker, a
    /// corrupted in-memory state) that a restart fixes. Never a dependency: a database outage
    /// would restart every healthy pod, which fixes nothing and adds load when it comes back.
    pub fn liveness_check(mut self, check: Check) -> Self {
        self.liveness.push(check);
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Validates and builds the layer. Inside a Tokio runtime, background checks start at once;
    /// otherwise at the first probe.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an invalid configuration ([`HealthConfig::validate`]), an invalid
    /// check ([`Check::validate`]), or two checks with one name.
    pub fn build(self) -> Result<HealthLayer, ConfigError> {
        self.config.validate()?;
        let mut names: Vec<&str> = Vec::new();
        for (kind, checks) in [("liveness", &self.liveness), ("readiness", &self.readiness)] {
            for check in checks {
                check.validate().map_err(|e| e.within(kind))?;
                if names.contains(&check.name()) {
                    return Err(ConfigError::new(
                        format!("{kind}.checks.{}", check.name()),
                        "another check has this name (names label metrics, so they are unique across liveness and readiness)",
                    ));
                }
                names.push(check.name());
            }
        }
        crate::metrics::describe();
        let config = self.config;
        let entries = |checks: Vec<Check>| {
            checks
                .into_iter()
                .map(|c| Arc::new(CheckEntry::new(c)))
                .collect()
        };
        let shared = Shared::new(SharedParts {
            paths: Paths {
                live: config.live_path,
                ready: config.ready_path,
                startup: config.startup_path,
                aliases: config.kubernetes_aliases,
            },
            include_details: config.include_details,
            overload_policy: config.overload,
            overload: self
                .overload
                .unwrap_or_else(|| OverloadState::global().clone()),
            close_while_draining: config.close_connections_while_draining,
            service: ServiceFields {
                service_id: config.service_id,
                version: config.version,
                release_id: config.release_id,
                description: config.description,
            },
            liveness: entries(self.liveness),
            readiness: entries(self.readiness),
        });
        Ok(HealthLayer { shared })
    }
}
