//! The application's own routes: what a small JSON service looks like before Palisade is added.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use palisade::{
    bulkhead::BulkheadLayer,
    circuit_breaker::Breaker,
    client::ClientError,
    concurrency_limit::LimiterHandle,
    core::{NoGuard, OverloadState, Rejection},
};
use tower::ServiceExt;

use crate::AppState;

/// The longest sleep `/api/slow` accepts, so one request cannot pin a worker for long.
pub const MAX_SLOW_MS: u64 = 10_000;

/// One catalogue item.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Item {
    id: u32,
    name: &'static str,
    price_cents: u32,
}

const ITEMS: [Item; 3] = [
    Item {
        id: 1,
        name: "palisade stake",
        price_cents: 1_250,
    },
    Item {
        id: 2,
        name: "gate hinge",
        price_cents: 3_900,
    },
    Item {
        id: 3,
        name: "watchtower kit",
        price_cents: 129_900,
    },
];

/// Who the mutual-TLS client is (`anonymous` without a client certificate).
async fn whoami(identity: Option<palisade::core::ClientIdentity>) -> Json<serde_json::Value> {
    Json(match identity {
        Some(identity) => json!({
            "name": identity.name(),
            "subject": identity.subject(),
            "sans": identity.sans().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "serial": identity.serial(),
        }),
        None => json!({ "name": "anonymous" }),
    })
}

/// The application's routes (no middleware).
pub(crate) fn router(state: AppState) -> Router {
    // The /api group in its own bulkhead (the admin routes have another, see `admin`): a flood
    // of slow /api requests cannot take the slots /admin needs.
    let api = Router::new()
        .route("/api/items", get(list_items))
        .route("/api/items/{id}", get(get_item))
        .route("/api/slow", get(slow))
        .route("/api/report", get(report))
        // The dependency is called through the client stack (see `flaky`).
        .route("/api/flaky", get(flaky))
        .route("/api/whoami", get(whoami))
        .route_layer(state.api_bulkhead.clone());
    // The WebSocket hub: bounded per-client queues, so a stalled client costs the server at most
    // its high-water mark and never delays the others.
    let ws = state.hub.route();
    Router::new()
        .route("/", get(index))
        .route("/ws", ws)
        .merge(api)
        .with_state(state)
}

/// The operators' routes: the breaker and dependency controls, in their own bulkhead.
pub(crate) fn admin(state: AppState) -> Router {
    Router::new()
        .route("/admin/breaker/open", post(force_open))
        .route("/admin/breaker/close", post(force_close))
        .route("/admin/breaker/reset", post(reset_breaker))
        .route("/admin/dependency/fail", post(fail_dependency))
        .route("/admin/dependency/heal", post(heal_dependency))
        .route("/admin/dependency/fail_next", post(fail_next))
        .route("/admin/status", get(status))
        .route_layer(state.admin_bulkhead.clone())
        .with_state(state)
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn index() -> &'static str {
    "Palisade production server. Try /api/items, /api/slow?ms=500, /api/flaky, /admin/status.\n"
}

async fn list_items() -> Json<&'static [Item]> {
    Json(&ITEMS)
}

async fn get_item(Path(id): Path<u32>) -> Response {
    match ITEMS.iter().find(|item| item.id == id) {
        Some(item) => Json(item).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no item with id {id}")),
    }
}

/// Query of `/api/slow`.
#[derive(Debug, Deserialize)]
pub(crate) struct SlowQuery {
    /// How long to work, in milliseconds (default 100, at most [`MAX_SLOW_MS`]).
    ms: Option<u64>,
}

async fn slow(Query(query): Query<SlowQuery>) -> Response {
    let ms = query.ms.unwrap_or(100);
    if ms > MAX_SLOW_MS {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("ms must be at most {MAX_SLOW_MS}"),
        );
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms })).into_response()
}

/// The most memory one `/api/report` may hold, in MiB.
pub(crate) const MAX_REPORT_MB: usize = 64;

/// Query of `/api/report`.
#[derive(Debug, Deserialize)]
pub(crate) struct ReportQuery {
    /// MiB the report holds while it is built (default 8, at most [`MAX_REPORT_MB`]).
    mb: Option<usize>,
    /// How long it is held, in milliseconds (default 200, at most [`MAX_SLOW_MS`]).
    ms: Option<u64>,
}

/// A memory-hungry report: holds `mb` MiB (every page written, so it is resident) for `ms`,
/// the kind of route that takes a server to its container's memory limit under load.
async fn report(Query(query): Query<ReportQuery>) -> Response {
    let (mb, ms) = (query.mb.unwrap_or(8), query.ms.unwrap_or(200));
    if mb > MAX_REPORT_MB || ms > MAX_SLOW_MS {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("mb must be at most {MAX_REPORT_MB} and ms at most {MAX_SLOW_MS}"),
        );
    }
    let buffer = vec![1u8; mb << 20];
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let checksum = buffer
        .iter()
        .step_by(4096)
        .map(|&b| u64::from(b))
        .sum::<u64>();
    Json(json!({ "held_mb": mb, "held_ms": ms, "pages": checksum })).into_response()
}

/// What an open breaker answers: the breaker layer's own problem body, so clients see one
/// rejection format whether a route or a client holds the breaker.
static CIRCUIT_OPEN: std::sync::LazyLock<Rejection> = std::sync::LazyLock::new(|| {
    Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "circuit_open")
        .title("Service Unavailable")
        .detail(
            "A dependency of this endpoint is failing and its circuit breaker is open. \
             Retry after the delay in Retry-After.",
        )
        .build()
        .expect("a static rejection")
});

/// Calls the dependency through the client stack: a transient `503` is retried within the
/// budget; a broken dependency's `500` is not (another attempt would get the same), and counts
/// towards its breaker; once open, the breaker answers at once, without calling it.
async fn flaky(State(state): State<AppState>) -> Response {
    let request = axum::http::Request::get("http://dependency/data")
        .body(axum::body::Body::empty())
        .expect("a static request");
    match state.dependency_client.clone().oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 * 1024)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body).into_owned();
            if status.is_success() {
                Json(json!({ "data": text })).into_response()
            } else {
                problem(StatusCode::BAD_GATEWAY, text)
            }
        }
        Err(ClientError::CircuitOpen(rejected)) => CIRCUIT_OPEN
            .response_retry_in::<axum::body::Body, NoGuard>(rejected.retry_in())
            .map(axum::body::Body::new),
        Err(ClientError::Timeout(_)) => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "the dependency did not answer in time",
        ),
        Err(ClientError::Upstream(never)) => match never {},
    }
}

/// Query of `/admin/dependency/fail_next`.
#[derive(Debug, Deserialize)]
pub(crate) struct FailNext {
    /// How many calls answer `503` (default 1).
    calls: Option<u64>,
}

async fn fail_next(
    State(state): State<AppState>,
    Query(query): Query<FailNext>,
) -> Json<serde_json::Value> {
    let calls = query.calls.unwrap_or(1);
    state.dependency.fail_next(calls);
    tracing::warn!(calls, "dependency failing transiently");
    Json(json!({ "dependency": "failing_transiently", "calls": calls }))
}

async fn fail_dependency(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.dependency.fail();
    tracing::warn!("dependency marked as failing");
    Json(json!({ "dependency": "failing" }))
}

async fn heal_dependency(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.dependency.heal();
    tracing::info!("dependency healed");
    Json(json!({ "dependency": "healthy" }))
}

/// The shared overload signal: each source (`global`: requests in flight, `listener`: open
/// connections) with its utilisation and whether it is shedding.
fn overload_status(overload: &OverloadState) -> serde_json::Value {
    let snapshot = overload.snapshot();
    let sources: Vec<_> = overload
        .sources()
        .into_iter()
        .map(|s| json!({ "name": s.name, "level": s.level, "overloaded": s.overloaded }))
        .collect();
    json!({ "level": snapshot.level, "overloaded": snapshot.overloaded, "sources": sources })
}

fn limiter_status(handle: &LimiterHandle) -> serde_json::Value {
    let thresholds = handle.thresholds();
    json!({
        "name": handle.name(),
        "count": handle.count(),
        "state": if handle.is_shedding() { "shedding" } else { "accepting" },
        "max": thresholds.max,
        "high_water": thresholds.high,
        "low_water": thresholds.low,
    })
}

fn bulkhead_status(layer: &BulkheadLayer) -> serde_json::Value {
    let bulkhead = layer.bulkhead();
    json!({
        "name": bulkhead.name(),
        "in_flight": bulkhead.in_flight(),
        "queued": bulkhead.queued(),
        "max_concurrent": bulkhead.config().max_concurrent,
    })
}

fn breaker_status(breaker: &Breaker) -> serde_json::Value {
    let snapshot = breaker.snapshot();
    json!({
        "name": breaker.name(),
        "state": snapshot.state.as_str(),
        "calls_in_window": snapshot.calls,
        "failures_in_window": snapshot.failures,
        "failure_rate": snapshot.failure_rate,
        "consecutive_failures": snapshot.consecutive_failures,
        "remaining_seconds": snapshot.remaining.map(|d| d.as_secs_f64()),
        "rejected": snapshot.rejected,
    })
}

async fn force_open(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.breaker.force_open();
    Json(breaker_status(&state.breaker))
}

async fn force_close(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.breaker.force_closed();
    Json(breaker_status(&state.breaker))
}

async fn reset_breaker(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.breaker.reset();
    Json(breaker_status(&state.breaker))
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let (calls, failures) = state.dependency.counts();
    Json(json!({
        "uptime_seconds": state.started.elapsed().as_secs(),
        "dependency": {
            "status": if state.dependency.is_failing() { "failing" } else { "healthy" },
            "calls": calls,
            "failures": failures,
        },
        "breaker": breaker_status(&state.breaker),
        "bulkheads": [bulkhead_status(&state.api_bulkhead), bulkhead_status(&state.admin_bulkhead)],
        "requests_in_flight": state.requests.as_ref().map(limiter_status),
        "overload": overload_status(&state.overload),
        // What a soak watches for leaks: tasks alive on this runtime (connections, WebSocket
        // clients, timers), which must come back down when the clients go.
        "runtime": {
            "alive_tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        },
    }))
}
