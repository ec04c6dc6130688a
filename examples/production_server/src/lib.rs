//! Palisade's flagship example: a small but realistic axum JSON service, hardened with the
//! Palisade layers as they land. `cargo run --release -p production_server` runs it; the README
//! walks through what to try.
//!
//! Routes:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | hello |
//! | `GET /api/items`, `GET /api/items/{id}` | JSON catalogue |
//! | `GET /api/slow?ms=N` | sleeps `N` ms (at most 10 000): load for the limiters |
//! | `GET /api/flaky` | calls an in-process dependency that can be broken (502 while broken), behind a circuit breaker (503 + `Retry-After` while open) |
//! | `POST /admin/breaker/open`, `/close`, `/reset` | force the breaker open or closed, or reset it |
//! | `POST /admin/dependency/fail`, `POST /admin/dependency/heal` | break and mend the dependency |
//! | `GET /admin/status` | JSON state of the dependency and the limiters |
//! | `GET /health/live`, `/health/ready`, `/health/startup` (and `/livez`, `/readyz`) | Kubernetes probes, `application/health+json` |
//!
//! Middleware, outermost first (the order of Palisade's preset stack): Palisade's request id
//! (every log line of a request carries it), tower-http's request trace, Palisade's security
//! headers (`api()` preset), Palisade's priority load shedder (header `x-priority`: `sheddable`,
//! `sheddable_plus`, `critical`; `/admin/` is always `critical_plus`), Palisade's global
//! in-flight limit (50 requests, shedding from 40 until back to 30, so a curl loop can show it),
//! and a 30 s timeout. The listener is wrapped in Palisade's connection
//! limit (1000 connections, refusing with a canned 503 from 800 until back to 600).

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{
    Router,
    http::StatusCode,
    serve::{Listener, ListenerExt},
};
use palisade::{
    bulkhead::BulkheadLayer,
    circuit_breaker::CircuitBreaker,
    concurrency_limit::{
        ConcurrencyLimitLayer, ConnectionLimitConfig, ConnectionLimitListener, LimiterHandle,
        Watermark,
    },
    core::{ConfigError, OverloadState, Priority},
    health::{Check, HealthLayer},
    loadshed::{LoadShedLayer, PathMatch},
    request_id::RequestIdLayer,
    security_headers::SecurityHeadersLayer,
};
use tokio::net::TcpListener;
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};

mod dependency;
mod routes;

pub use dependency::{Dependency, DependencyDown};
pub use routes::MAX_SLOW_MS;

/// How long a request may take before it is answered with 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The global limit on requests in flight.
pub const MAX_IN_FLIGHT: u32 = 50;
/// The limit on open connections.
pub const MAX_CONNECTIONS: u32 = 1000;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The breakable dependency behind `/api/flaky`.
    pub dependency: Dependency,
    /// When the server started.
    pub started: tokio::time::Instant,
    /// The global in-flight limiter's state.
    pub requests: LimiterHandle,
    /// The connection limiter's state, when the server runs behind one.
    pub connections: Option<LimiterHandle>,
    /// The circuit breaker guarding the dependency of `/api/flaky`.
    pub breaker: CircuitBreaker,
    /// The bulkhead of the `/api` routes.
    pub api_bulkhead: BulkheadLayer,
    /// The bulkhead of the `/admin` routes.
    pub admin_bulkhead: BulkheadLayer,
}

/// The Palisade layers of this server, built once: their state is shared by every route and
/// connection.
#[derive(Debug, Clone)]
pub struct Layers {
    /// Request ids: generated (UUID version 7), or kept when valid; on every response and log line.
    pub request_id: RequestIdLayer,
    /// Security headers, the preset for JSON APIs.
    pub security_headers: SecurityHeadersLayer,
    /// Priority load shedding (header `x-priority`), in front of the limiter.
    pub load_shed: LoadShedLayer,
    /// The global in-flight request limit.
    pub request_limit: ConcurrencyLimitLayer,
    /// Kubernetes probes, outside the limiting layers: never shed.
    pub health: HealthLayer,
    /// The breakable dependency behind `/api/flaky`, shared with the readiness check.
    pub dependency: Dependency,
    /// The breaker guarding that dependency: opens after 5 failures in a row (or half of the
    /// last 100 calls), stays open 10 s, then lets 3 probes through.
    pub breaker: CircuitBreaker,
    /// `/api`: 40 slots, 20 waiting at most, for at most 1 s.
    pub api_bulkhead: BulkheadLayer,
    /// `/admin`: 10 slots of its own, 10 waiting at most.
    pub admin_bulkhead: BulkheadLayer,
}

impl Layers {
    /// Builds the layers, publishing overload into `overload` (use
    /// [`OverloadState::global`] in a real server; tests pass their own).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for invalid settings.
    pub fn new(overload: &OverloadState) -> Result<Self, ConfigError> {
        let request_limit = ConcurrencyLimitLayer::builder()
            .name("global")
            .max_in_flight(MAX_IN_FLIGHT)
            .high_water(Watermark::fraction(0.8))
            .low_water(Watermark::fraction(0.6))
            .retry_after(Duration::from_secs(2))
            .retry_after_jitter(Duration::from_secs(2))
            .overload_state(overload.clone())
            .build()?;
        // Operators must reach the control routes while the service sheds.
        let load_shed = LoadShedLayer::builder()
            .route(PathMatch::Prefix("/admin/".into()), Priority::CriticalPlus)
            .overload_state(overload.clone())
            .build()?;
        let dependency = Dependency::new(Duration::from_millis(5));
        let probe = dependency.clone();
        // The dependency stands in for a shared remote service: a non-critical check shows its
        // failure as `warn` without taking every replica out of rotation at once. It runs on
        // demand (cached 2 s, single flight), so probes do not call it on a timer.
        let health = HealthLayer::builder()
            .overload_state(overload.clone())
            .include_details(true) // a demo: production keeps details off
            .kubernetes_aliases(true)
            .readiness_check(
                Check::from_fn("dependency", move || {
                    let dependency = probe.clone();
                    async move { dependency.call().await }
                })
                .timeout(Duration::from_millis(500))
                .on_demand(Duration::from_secs(2))
                .non_critical(),
            )
            .build()?;
        let breaker = CircuitBreaker::builder()
            .name("dependency")
            .wait_in_open(Duration::from_secs(10))
            .automatic_transition(true)
            .build()?;
        let api_bulkhead = BulkheadLayer::builder("api")
            .max_concurrent(40)
            .max_queued(20)
            .max_wait(Duration::from_secs(1))
            .build()?;
        let admin_bulkhead = BulkheadLayer::builder("admin")
            .max_concurrent(10)
            .max_queued(10)
            .build()?;
        Ok(Self {
            breaker,
            api_bulkhead,
            admin_bulkhead,
            request_id: RequestIdLayer::new(),
            security_headers: SecurityHeadersLayer::api(),
            load_shed,
            request_limit,
            health,
            dependency,
        })
    }

    /// The handlers' state, wired to these layers.
    pub fn state(&self, connections: Option<LimiterHandle>) -> AppState {
        AppState {
            dependency: self.dependency.clone(),
            started: tokio::time::Instant::now(),
            requests: self.request_limit.handle(),
            connections,
            breaker: self.breaker.clone(),
            api_bulkhead: self.api_bulkhead.clone(),
            admin_bulkhead: self.admin_bulkhead.clone(),
        }
    }
}

/// The application with its middleware stack, outermost first: request id, trace, security
/// headers, health probes, priority load shedding, in-flight limit, timeout. Outermost layers see (and mark)
/// every response, rejections included; the shedder classifies before the limiter so that the
/// limiter's critical reserve sees the class.
pub fn app(layers: &Layers, state: AppState) -> Router {
    routes::router(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(layers.request_limit.clone())
        .layer(layers.load_shed.clone())
        .layer(layers.health.clone())
        .layer(layers.security_headers.clone())
        .layer(TraceLayer::new_for_http())
        .layer(layers.request_id.clone())
}

/// Wraps `listener` in the connection limit.
///
/// # Errors
///
/// A [`ConfigError`] for invalid settings.
pub fn limit_connections(
    listener: TcpListener,
    overload: &OverloadState,
) -> Result<ConnectionLimitListener<TcpListener>, ConfigError> {
    ConnectionLimitListener::new(
        listener,
        ConnectionLimitConfig {
            max_connections: MAX_CONNECTIONS,
            overload: Some(overload.clone()),
            ..ConnectionLimitConfig::default()
        },
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish.
///
/// # Errors
///
/// I/O errors of the listener.
pub async fn serve<L>(
    listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    // `tap_io` gives handlers `ConnectInfo<SocketAddr>` through any listener wrapper.
    let listener = listener.tap_io(|_| ());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, the signal Kubernetes sends on pod deletion.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
