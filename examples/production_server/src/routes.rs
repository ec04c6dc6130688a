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
    circuit_breaker::{Breaker, CircuitBreakerLayer},
    concurrency_limit::LimiterHandle,
    core::OverloadState,
};

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

/// The application's routes (no middleware).
pub(crate) fn router(state: AppState) -> Router {
    // The /api group in its own bulkhead (the admin routes have another, see `admin`): a flood
    // of slow /api requests cannot take the slots /admin needs.
    let api = Router::new()
        .route("/api/items", get(list_items))
        .route("/api/items/{id}", get(get_item))
        .route("/api/slow", get(slow))
        // The dependency call is guarded: after repeated failures the breaker opens and answers
        // 503 + Retry-After at once instead of waiting on a broken dependency.
        .route(
            "/api/flaky",
            get(flaky).route_layer(CircuitBreakerLayer::new(state.breaker.clone())),
        )
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

async fn flaky(State(state): State<AppState>) -> Response {
    match state.dependency.call().await {
        Ok(data) => Json(json!({ "data": data })).into_response(),
        Err(err) => problem(StatusCode::BAD_GATEWAY, err.to_string()),
    }
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
    }))
}
