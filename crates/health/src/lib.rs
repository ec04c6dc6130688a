//! Kubernetes liveness, readiness and startup probes for axum and hyper servers: answered before
//! any limiter so they are never shed, honest about overload and shutdown, with cached,
//! single-flight checks that cannot hang a probe, and a scripted drain for SIGTERM.
//!
//! # The probes
//!
//! [`HealthLayer`] answers three paths itself and passes every other request to the
//! application. Place it **outside** the limiting layers (concurrency limit, load shedder): the
//! probes are then never limited or shed, and readiness *reads* the shared
//! [`OverloadState`](palisade_core::OverloadState) instead of being subject to it (Envoy's
//! overload actions reject kubelet probes and get busy pods restarted: envoy#23843). The kubelet
//! opens a new connection for every HTTP probe, so a connection limit at the listener that
//! refuses connections refuses probes too: keep its high-water mark well above normal load, or
//! serve the probes on a second port (another `axum::serve` of a router with no routes, wrapped
//! in a clone of the same layer, both servers shut down by the same [`Drain`]).
//!
//! | probe | default path | 200 when | 503 when |
//! |---|---|---|---|
//! | liveness | `/health/live` (`/livez`) | the process answers, liveness checks pass | a liveness check fails |
//! | startup | `/health/startup` | [`HealthHandle::mark_started`] was called | before that |
//! | readiness | `/health/ready` (`/readyz`) | started, not draining, not overloaded, critical checks pass | not started, draining, overloaded, or a critical check fails |
//!
//! - **Liveness** restarts the container when it fails, so it only looks at the process itself.
//!   Liveness checks are for unrecoverable *local* states (a deadlocked worker pool, a
//!   corrupted cache); **never dependencies**: a database outage would restart every healthy
//!   pod. Liveness ignores overload and draining.
//! - **Startup** holds the other probes until the application says it is ready to serve.
//! - **Readiness** decides whether the pod receives traffic. A failing *non-critical* check
//!   ([`Check::non_critical`]) reports `warn` with 200: visible, but the pod stays in rotation.
//!   Overload fails readiness by default; [`OverloadPolicy::Warn`] is the observe-only mode
//!   (reported, not acted on).
//! - Probes answer `GET` and `HEAD` (405 otherwise) with `application/health+json` (the IETF
//!   health-check draft) and `Cache-Control: no-store`. Without details (the default) the body
//!   is only `{"status":"pass"}` (or `warn`, `fail`); with
//!   [`include_details`](HealthBuilder::include_details):
//!
//! ```json
//! {"status":"fail","output":"lifecycle: draining",
//!  "checks":{"lifecycle":[{"status":"fail","output":"draining"}],
//!            "overload":[{"status":"pass","observedValue":12.5,"observedUnit":"percent"}],
//!            "postgres":[{"status":"pass","time":"2026-11-22T10:15:30.123Z"}]}}
//! ```
//!
//! # Checks
//!
//! A [`Check`] is a closure returning a future ([`Check::from_fn`]) or a [`HealthCheck`]
//! implementation, with a name, a timeout (default 500 ms) and a [`Schedule`]:
//!
//! - **Background** (default, every 5 s): runs in its own task; probes read the cached result
//!   and never wait (except for the very first run). A result older than `2 × period + timeout`
//!   counts as failed.
//! - **On demand** with a TTL: a probe runs it when the cached result has expired; concurrent
//!   probes share one run (single flight: 100 probes, one run).
//!
//! Each run happens in its own task under its timeout, with panics caught: a check that panics
//! or times out is a failure with the reason as output, and a probe never waits longer than the
//! check's timeout. Checks of one probe run concurrently.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use palisade_health::{Check, HealthLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palisade_core::ConfigError> {
//! let health = HealthLayer::builder()
//!     .readiness_check(
//!         Check::from_fn("postgres", || async {
//!             // pool.execute("SELECT 1").await
//!             Ok::<(), std::io::Error>(())
//!         })
//!         .timeout(Duration::from_millis(300))
//!         .on_demand(Duration::from_secs(2)),
//!     )
//!     .build()?;
//! let handle = health.handle();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     // .layer(concurrency_limit)  <- limiters go inside: probes are never shed
//!     .layer(health);
//! handle.mark_started();
//! # let _ = app; Ok(()) }
//! ```
//!
//! # Drain on SIGTERM
//!
//! [`Drain`] is the shutdown sequence as one reusable piece: on the signal, readiness fails at
//! once; the server keeps serving for the propagation delay (default 5 s) while endpoints are
//! removed everywhere, with `Connection: close` on responses so keep-alive clients move away;
//! then it stops accepting and lets in-flight requests finish, for at most the deadline
//! (default 20 s, since axum's graceful shutdown would wait forever); then `main` returns. Set
//! `terminationGracePeriodSeconds` above delay + deadline (30 s for the defaults). See
//! [`Drain`] for the wiring, `examples/kubernetes.rs` for a whole server, and
//! `deploy/kubernetes/` in the repository for a manifest.
//!
//! # Metrics and logs
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_health_check_status` (1 pass, 0.5 warn, 0 fail) | gauge | `check` |
//! | `palisade_health_check_duration_seconds` | histogram | `check` |
//! | `palisade_health_probe_status` (1 pass, 0.5 warn, 0 fail) | gauge | `probe` (`live`, `ready`, `startup`) |
//!
//! Handles are registered when the layer is built: install the recorder first. State changes are
//! `tracing` events, logged once per change: startup complete, drain begun, each drain phase, a
//! check's status changing (warn when it fails), a probe's answer changing, a check timing out or
//! panicking.

mod check;
mod config;
mod drain;
mod future;
mod handle;
mod layer;
pub mod metrics;
mod report;
mod runner;
mod service;
mod state;
mod status;

pub use check::{
    Check, DEFAULT_PERIOD, DEFAULT_TIMEOUT, FnCheck, HealthCheck, RESERVED_NAMES, Schedule,
};
pub use config::{
    DEFAULT_LIVE_PATH, DEFAULT_READY_PATH, DEFAULT_STARTUP_PATH, DrainConfig, HealthConfig, LIVEZ,
    MAX_DRAIN_DURATION, OverloadPolicy, READYZ,
};
pub use drain::{Drain, DrainOutcome, DrainPhase};
pub use future::ResponseFuture;
pub use handle::HealthHandle;
pub use layer::{HealthBuilder, HealthLayer};
pub use report::{CheckReport, HealthReport, Probe};
pub use service::Health;
pub use state::HEALTH_JSON;
pub use status::{CheckResult, IntoCheckResult, Status};
