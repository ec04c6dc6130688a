//! [`HealthHandle`]: the application's side of the probes.

use std::sync::Arc;

use crate::{HealthReport, Probe, state::Shared};

/// The application's controls over the probes: mark startup complete, begin draining, and read
/// the probes' reports. Cheap to clone; every clone acts on the same layer.
///
/// ```
/// use palisade_health::{HealthLayer, Probe, Status};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = HealthLayer::new();
/// let health = layer.handle();
/// assert_eq!(health.report(Probe::Startup).await.status(), Status::Fail);
/// health.mark_started(); // migrations done, caches warm
/// assert_eq!(health.report(Probe::Readiness).await.status(), Status::Pass);
/// health.begin_drain(); // SIGTERM: leave the load balancer first
/// assert_eq!(health.report(Probe::Readiness).await.status(), Status::Fail);
/// assert_eq!(health.report(Probe::Liveness).await.status(), Status::Pass);
/// # }
/// ```
#[derive(Clone)]
pub struct HealthHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHandle")
            .field("started", &self.is_started())
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl HealthHandle {
    /// Startup is complete: the startup probe passes from now on, and readiness may. Call it
    /// once the application can serve (listener bound, migrations run, caches warm).
    /// Idempotent.
    pub fn mark_started(&self) {
        if self.shared.lifecycle.mark_started() {
            tracing::info!("startup complete: startup probe passes, readiness may pass");
        }
    }

    /// Whether [`mark_started`](Self::mark_started) was called.
    pub fn is_started(&self) -> bool {
        self.shared.lifecycle.is_started()
    }

    /// Readiness fails from this moment on, for good; liveness and startup are unaffected, and
    /// requests are still served. The first step of a shutdown ([`Drain`](crate::Drain) calls
    /// it). Idempotent.
    pub fn begin_drain(&self) {
        if self.shared.lifecycle.begin_drain() {
            tracing::warn!("draining: readiness fails from now on");
        }
    }

    /// Whether [`begin_drain`](Self::begin_drain) was called.
    pub fn is_draining(&self) -> bool {
        self.shared.lifecycle.is_draining()
    }

    /// Resolves once draining has begun (at once if it already has).
    pub async fn draining(&self) {
        self.shared.lifecycle.draining().await;
    }

    /// What the probe would answer now, running the checks that need it, exactly as a probe
    /// request does (same caches, same single flight). For status pages and tests.
    pub async fn report(&self, probe: Probe) -> HealthReport {
        Arc::clone(&self.shared).report(probe).await
    }
}
