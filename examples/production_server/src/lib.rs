//! Palisade's flagship example: a small but realistic axum JSON service, hardened with
//! Palisade's preset stack and served by `palisade::serve`. `cargo run --release -p
//! production_server` runs it; the README walks through what to try.
//!
//! Routes:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | hello |
//! | `GET /api/items`, `GET /api/items/{id}` | JSON catalogue |
//! | `GET /api/slow?ms=N` | sleeps `N` ms (at most 10 000): load for the limiters |
//! | `GET /api/flaky` | calls an in-process dependency over HTTP through the `dependency` client (`[clients.dependency]`): transient `503`s are retried within the budget, a broken dependency (`500`) answers 502, and its breaker, open after repeated failures, answers 503 + `Retry-After` at once |
//! | `GET /api/whoami` | the mutual-TLS client's identity (name, subject, SANs, serial), or `anonymous` |
//! | `POST /admin/breaker/open`, `/close`, `/reset` | force the breaker open or closed, or reset it (operators' routes: on the operations port when `PALISADE_OPS_ADDR` is set, else on this port with `Authorization: Bearer $PALISADE_ADMIN_TOKEN`) |
//! | `POST /admin/dependency/fail`, `POST /admin/dependency/heal` | break and mend the dependency |
//! | `POST /admin/dependency/fail_next?calls=N` | the dependency's next `N` calls answer `503` (transient: retried) |
//! | `GET /admin/status` | JSON state of the dependency, breaker, bulkheads, limiter, overload and the runtime's live task count |
//! | `GET /ws` | WebSocket: a status update every second from a broadcast hub whose per-client queues are bounded (a client that stops reading is dropped, never buffered for) |
//! | `GET /metrics` | Prometheus metrics (added by the binary, which installs the recorder; on the operations port when there is one) |
//! | `GET /health/live`, `/health/ready`, `/health/startup` (and `/livez`, `/readyz`) | Kubernetes probes, `application/health+json` |
//!
//! The stack is Palisade's preset (request id, security headers, request guard, telemetry,
//! health, a per-client rate limit, priority load shedding, in-flight limit, timeout, body limit;
//! connection limit on the listener) configured
//! by `palisade.toml` beside this crate, compiled in ([`DEMO_CONFIG`]); `/api` and `/admin` are
//! in separate bulkheads.

use axum::Router;
use palisade::{
    AdminTokenLayer, LoadError, PalisadeConfig, Server, Stack,
    bulkhead::BulkheadLayer,
    circuit_breaker::Breaker,
    client::Client,
    concurrency_limit::LimiterHandle,
    core::{ConfigError, OverloadState},
    health::Check,
    telemetry::PrometheusMetrics,
    ws::Hub,
};
use tower_http::trace::TraceLayer;

mod dependency;
mod routes;

pub use dependency::{Dependency, DependencyDown};
pub use routes::MAX_SLOW_MS;

/// The example's defaults over Palisade's: `examples/production_server/palisade.toml`.
pub const DEMO_CONFIG: &str = include_str!("../palisade.toml");

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The breakable dependency behind `/api/flaky`.
    pub dependency: Dependency,
    /// When the server started.
    pub started: tokio::time::Instant,
    /// The global in-flight limiter's state, when that layer is on.
    pub requests: Option<LimiterHandle>,
    /// The overload signal the stack shares (the limiters' utilisation, shedding).
    pub overload: OverloadState,
    /// The circuit breaker of the `dependency` client.
    pub breaker: Breaker,
    /// The dependency of `/api/flaky` behind the client stack `[clients.dependency]`.
    pub dependency_client: Client<Dependency>,
    /// The bulkhead of the `/api` routes.
    pub api_bulkhead: BulkheadLayer,
    /// The bulkhead of the `/admin` routes.
    pub admin_bulkhead: BulkheadLayer,
    /// The broadcast hub behind `/ws`.
    pub hub: Hub,
}

/// The example's configuration: [`DEMO_CONFIG`], then `PALISADE_CONFIG` or `./palisade.toml`,
/// then `PALISADE_*__*` environment overrides.
///
/// # Errors
///
/// A [`LoadError`] naming the key and the problem.
pub fn config() -> Result<PalisadeConfig, LoadError> {
    PalisadeConfig::load_with_defaults(DEMO_CONFIG)
}

/// Builds the stack (publishing overload into `overload`: [`OverloadState::global`] in the real
/// server, a private one in tests) and the handlers' state wired to it.
///
/// # Errors
///
/// A [`ConfigError`] for invalid settings, or when the configuration lacks the `api` or
/// `admin` bulkhead or the `dependency` client this application needs.
pub fn build(
    config: PalisadeConfig,
    overload: &OverloadState,
) -> Result<(Stack, AppState), ConfigError> {
    let dependency = Dependency::new(std::time::Duration::from_millis(5));
    let probe = dependency.clone();
    // The dependency stands in for a shared remote service: a non-critical check shows its
    // failure as `warn` without taking every replica out of rotation at once. It runs on
    // demand (cached 2 s, single flight), so probes do not call it on a timer.
    let check = Check::from_fn("dependency", move || {
        let dependency = probe.clone();
        async move { dependency.call().await }
    })
    .timeout(std::time::Duration::from_millis(500))
    .on_demand(std::time::Duration::from_secs(2))
    .non_critical();
    let hub = Hub::from_config(config.websocket.clone()).map_err(|e| e.within("websocket"))?;
    let stack = Stack::builder()
        .config(config)
        .overload_state(overload.clone())
        .readiness_check(check)
        .build()?;
    let client = stack.client_layer("dependency")?;
    let state = AppState {
        dependency_client: tower::Layer::layer(&client, dependency.clone()),
        breaker: client.breaker().clone(),
        dependency,
        started: tokio::time::Instant::now(),
        requests: stack.request_limit(),
        overload: overload.clone(),
        api_bulkhead: stack.bulkhead("api")?,
        admin_bulkhead: stack.bulkhead("admin")?,
        hub,
    };
    Ok((stack, state))
}

/// The application with the stack around it. tower-http's request trace sits innermost, so each
/// admitted request's log lines carry its request id. With `admin`, the operators' routes are on
/// this port too, behind that token check; without, they belong on the operations listener
/// ([`ops_app`]).
pub fn app(stack: &Stack, state: AppState, admin: Option<AdminTokenLayer>) -> Router {
    let routes = match admin {
        Some(token) => routes::router(state.clone()).merge(routes::admin(state).route_layer(token)),
        None => routes::router(state),
    };
    stack.apply(routes.layer(TraceLayer::new_for_http()))
}

/// The public app and what [`palisade::serve`] runs with. The operators' routes and `/metrics`
/// go to the operations listener when `[server.ops] addr` (`PALISADE_OPS_ADDR`) is set, so the
/// public port never reaches them; else they share the public port, the admin routes behind
/// `PALISADE_ADMIN_TOKEN` ([`AdminTokenLayer::from_env`]: off without one) and `/metrics`
/// outside the stack, like the probes: scrapes are never limited or shed.
pub fn public_app_and_server(
    stack: &Stack,
    state: AppState,
    metrics: &PrometheusMetrics,
) -> (Router, Server) {
    if let Some(ops) = stack.server().config().ops.addr {
        println!("operations (probes, /metrics, /admin) on http://{ops}");
        let ops = metrics.add_route(ops_app(stack, state.clone()));
        (app(stack, state, None), stack.server().ops(ops))
    } else {
        let admin = Some(AdminTokenLayer::from_env());
        (metrics.add_route(app(stack, state, admin)), stack.server())
    }
}

/// What the operations listener serves: the probes and the operators' routes, with nothing that
/// limits (add `/metrics` with the Prometheus handle).
pub fn ops_app(stack: &Stack, state: AppState) -> Router {
    stack.ops(routes::admin(state).layer(TraceLayer::new_for_http()))
}

/// Publishes a status update to every `/ws` client once per `period`, until the server starts
/// draining; then closes every WebSocket with 1001 (going away), so clients reconnect elsewhere
/// instead of being cut at the drain deadline.
pub async fn broadcast_updates(stack: Stack, state: AppState, period: std::time::Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let draining = stack.health().draining();
    tokio::pin!(draining);
    loop {
        tokio::select! {
            () = &mut draining => break,
            _ = ticks.tick() => {
                let update = serde_json::json!({
                    "type": "status",
                    "uptime_seconds": state.started.elapsed().as_secs(),
                    "requests_in_flight": state.requests.as_ref().map(LimiterHandle::count),
                    "overload_level": state.overload.level(),
                    "breaker": state.breaker.state().as_str(),
                    "clients": state.hub.connections(),
                });
                state.hub.publish(update.to_string());
            }
        }
    }
    let closed = state.hub.close_all(Some(axum::extract::ws::CloseFrame {
        code: 1001,
        reason: "server shutting down".into(),
    }));
    tracing::info!(closed, "closed the WebSocket clients for the drain");
}
