//! [`Drain`]: the shutdown sequence a Kubernetes pod needs on SIGTERM.

use std::{
    future::{Future, IntoFuture},
    sync::Arc,
};

use palisade_core::ConfigError;
use tokio::{sync::watch, time::Instant};

use crate::{DrainConfig, HealthHandle};

/// Where a [`Drain`] is in its sequence. Phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DrainPhase {
    /// No shutdown yet.
    Serving,
    /// Readiness fails; the server still accepts and serves while load balancers and
    /// kube-proxy stop sending (the propagation delay).
    Propagating,
    /// The server no longer accepts connections; in-flight requests finish, up to the deadline.
    Draining,
    /// [`Drain::run`] has returned: exit the process.
    Stopped,
}

/// How [`Drain::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum DrainOutcome {
    /// The server finished by itself: every connection closed.
    Drained,
    /// The deadline passed with connections still open. They are cut when the runtime stops
    /// (return from `main`).
    DeadlineExceeded,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    phase: DrainPhase,
    started: Option<Instant>,
    stopped_accepting: Option<Instant>,
    expedited: bool,
}

struct Inner {
    health: HealthHandle,
    config: DrainConfig,
    progress: watch::Sender<Progress>,
}

/// The shutdown sequence, for `axum::serve(...).with_graceful_shutdown` (or any server whose
/// graceful shutdown takes a future):
///
/// 1. **Signal** (SIGTERM, Ctrl-C, or [`Drain::start`]): readiness fails at once
///    ([`HealthHandle::begin_drain`]); liveness keeps passing.
/// 2. **Propagation delay** (default 5 s): the server still accepts and serves, while the
///    endpoint removal reaches every kube-proxy, ingress and load balancer. Pass-through
///    responses carry `Connection: close`, so keep-alive clients move to other instances.
/// 3. **Stop accepting**: the future from [`Drain::signal`] resolves; axum closes the listener
///    (new connections are refused), closes idle connections and lets in-flight requests finish.
/// 4. **Deadline** (default 20 s): axum's graceful shutdown waits for open connections forever;
///    [`Drain::run`] stops waiting at the deadline and returns, and returning from `main` ends
///    the runtime, cutting what is left, before the kubelet's SIGKILL at
///    `terminationGracePeriodSeconds`.
///
/// ```no_run
/// use palisade_health::{Drain, DrainConfig, DrainOutcome, HealthLayer};
///
/// # async fn run(app: axum::Router, shutdown_signal: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
/// let health = HealthLayer::new();
/// let drain = Drain::new(health.handle(), DrainConfig::default()).expect("valid drain config");
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let app = app.layer(health.clone());
/// health.handle().mark_started();
/// let server = axum::serve(listener, app).with_graceful_shutdown(drain.signal(shutdown_signal));
/// match drain.run(server).await? {
///     DrainOutcome::Drained => {}
///     DrainOutcome::DeadlineExceeded => eprintln!("requests cut at the drain deadline"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("config", &self.inner.config)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Drain {
    /// A sequence that drains `health`'s readiness.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid ([`DrainConfig::validate`]).
    pub fn new(health: HealthHandle, config: DrainConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                health,
                config,
                progress: watch::Sender::new(Progress {
                    phase: DrainPhase::Serving,
                    started: None,
                    stopped_accepting: None,
                    expedited: false,
                }),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> DrainConfig {
        self.inner.config
    }

    /// The probes this sequence drains.
    pub fn health(&self) -> &HealthHandle {
        &self.inner.health
    }

    /// The current phase.
    pub fn phase(&self) -> DrainPhase {
        self.inner.progress.borrow().phase
    }

    /// Resolves once the sequence has reached `phase` (at once if it is there or beyond).
    pub async fn reached(&self, phase: DrainPhase) {
        let mut rx = self.inner.progress.subscribe();
        // The sender lives in `self.inner`, which we hold: the channel cannot close.
        let _ = rx.wait_for(|p| p.phase >= phase).await;
    }

    /// Starts the sequence now, as a signal would: for a `preStop` HTTP hook, an admin endpoint
    /// or tests. Idempotent.
    pub fn start(&self) {
        // Readiness fails before anyone can observe the new phase.
        self.inner.health.begin_drain();
        let started = self.inner.progress.send_if_modified(|p| {
            if p.phase == DrainPhase::Serving {
                p.phase = DrainPhase::Propagating;
                p.started = Some(Instant::now());
                true
            } else {
                false
            }
        });
        if started {
            tracing::info!(
                propagation_delay_ms = self.inner.config.propagation_delay.as_millis(),
                "shutdown started: readiness fails, still serving while load balancers catch up"
            );
        }
    }

    /// Skips what is left of the propagation delay and of the deadline: stop accepting now and
    /// stop waiting for in-flight requests (for a second Ctrl-C). Starts the sequence if needed.
    pub fn expedite(&self) {
        self.start();
        let first = self.inner.progress.send_if_modified(|p| {
            let first = !p.expedited;
            p.expedited = true;
            first
        });
        if first {
            tracing::warn!("shutdown expedited: skipping the remaining delays");
        }
    }

    async fn expedited(&self) {
        let mut rx = self.inner.progress.subscribe();
        let _ = rx.wait_for(|p| p.expedited).await;
    }

    /// The future to hand to `with_graceful_shutdown`: waits for `trigger` (or
    /// [`start`](Self::start)), fails readiness, waits the propagation delay, then resolves,
    /// which tells the server to stop accepting. Several servers may each take one; they stop
    /// accepting together.
    pub fn signal<F>(&self, trigger: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        async move {
            tokio::select! {
                () = trigger => this.start(),
                () = this.reached(DrainPhase::Propagating) => {}
            }
            let started = this
                .inner
                .progress
                .borrow()
                .started
                .unwrap_or_else(Instant::now);
            tokio::select! {
                () = tokio::time::sleep_until(started + this.inner.config.propagation_delay) => {}
                () = this.expedited() => {}
            }
            this.stop_accepting();
        }
    }

    fn stop_accepting(&self) {
        let first = self.inner.progress.send_if_modified(|p| {
            if p.phase < DrainPhase::Draining {
                p.phase = DrainPhase::Draining;
                p.stopped_accepting = Some(Instant::now());
                true
            } else {
                false
            }
        });
        if first {
            tracing::info!(
                deadline_ms = self.inner.config.deadline.as_millis(),
                "shutdown: no longer accepting connections, draining in-flight requests"
            );
        }
    }

    /// Resolves when the in-flight requests' time is up: the deadline after the server stopped
    /// accepting (or at once when expedited).
    async fn deadline(&self) {
        self.reached(DrainPhase::Draining).await;
        let stopped = self
            .inner
            .progress
            .borrow()
            .stopped_accepting
            .unwrap_or_else(Instant::now);
        tokio::select! {
            () = tokio::time::sleep_until(stopped + self.inner.config.deadline) => {}
            () = self.expedited() => {}
        }
    }

    /// Runs `server` (for example `axum::serve(...).with_graceful_shutdown(drain.signal(...))`)
    /// until it finishes by itself, or until the deadline after it stopped accepting, whichever
    /// comes first. Return from `main` afterwards: the runtime's shutdown cuts the connections
    /// still open.
    ///
    /// # Errors
    ///
    /// The server's own error.
    pub async fn run<F, E>(&self, server: F) -> Result<DrainOutcome, E>
    where
        F: IntoFuture<Output = Result<(), E>>,
    {
        let server = std::pin::pin!(server.into_future());
        let outcome = tokio::select! {
            result = server => {
                result?;
                DrainOutcome::Drained
            }
            () = self.deadline() => DrainOutcome::DeadlineExceeded,
        };
        self.inner
            .progress
            .send_modify(|p| p.phase = DrainPhase::Stopped);
        match outcome {
            DrainOutcome::Drained => tracing::info!("shutdown: server drained"),
            DrainOutcome::DeadlineExceeded => tracing::warn!(
                deadline_ms = self.inner.config.deadline.as_millis(),
                "shutdown: drain deadline passed with connections open, stopping anyway"
            ),
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use super::*;
    use crate::{HealthLayer, Probe, Status};

    fn drain() -> (Drain, HealthHandle) {
        let health = HealthLayer::builder()
            .overload_state(palisade_core::OverloadState::new())
            .build()
            .unwrap()
            .handle();
        health.mark_started();
        (
            Drain::new(health.clone(), DrainConfig::default()).unwrap(),
            health,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_sequence_runs_in_order_on_the_clock() {
        let (drain, health) = drain();
        let (trigger, fired) = tokio::sync::oneshot::channel::<()>();
        let signal = tokio::spawn(drain.signal(async move {
            let _ = fired.await;
        }));
        assert_eq!(drain.phase(), DrainPhase::Serving);
        assert_eq!(health.report(Probe::Readiness).await.status(), Status::Pass);

        let t0 = Instant::now();
        trigger.send(()).unwrap();
        drain.reached(DrainPhase::Propagating).await;
        assert!(health.is_draining(), "readiness fails first");
        assert_eq!(health.report(Probe::Readiness).await.status(), Status::Fail);
        assert_eq!(health.report(Probe::Liveness).await.status(), Status::Pass);

        signal.await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(5), "propagation delay");
        assert_eq!(drain.phase(), DrainPhase::Draining);

        // A server that never finishes is abandoned at the deadline.
        let outcome = drain
            .run(std::future::pending::<Result<(), Infallible>>())
            .await
            .unwrap();
        assert_eq!(outcome, DrainOutcome::DeadlineExceeded);
        assert_eq!(t0.elapsed(), Duration::from_secs(25));
        assert_eq!(drain.phase(), DrainPhase::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_finishes_is_drained() {
        let (drain, _) = drain();
        let server = {
            let drain = drain.clone();
            async move {
                drain.signal(std::future::ready(())).await;
                // In-flight requests take 3 s after the server stops accepting.
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok::<(), Infallible>(())
            }
        };
        let t0 = Instant::now();
        assert_eq!(drain.run(server).await.unwrap(), DrainOutcome::Drained);
        assert_eq!(t0.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_are_returned() {
        let (drain, _) = drain();
        let err = drain.run(async { Err::<(), _>("bind failed") }).await;
        assert_eq!(err, Err("bind failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn start_and_expedite_skip_the_waiting() {
        let (drain, health) = drain();
        let signal = tokio::spawn(drain.signal(std::future::pending()));
        let t0 = Instant::now();
        drain.start();
        drain.start();
        assert!(health.is_draining());
        tokio::time::sleep(Duration::from_secs(1)).await;
        drain.expedite();
        signal.await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
        let outcome = drain
            .run(std::future::pending::<Result<(), Infallible>>())
            .await
            .unwrap();
        assert_eq!(outcome, DrainOutcome::DeadlineExceeded);
        assert_eq!(t0.elapsed(), Duration::from_secs(1), "no deadline wait");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let health = HealthLayer::new().handle();
        let config = DrainConfig {
            deadline: Duration::ZERO,
            ..DrainConfig::default()
        };
        assert_eq!(
            Drain::new(health, config).unwrap_err().key(),
            "drain.deadline"
        );
    }
}
