//! The example's routes, served for real on 127.0.0.1 and called with a real client.

use std::time::Duration;

use palisade::core::OverloadState;
use palisade::{PalisadeConfig, Stack, concurrency_limit::LimiterHandle};
use palisade_testkit::{Client, TestServer};
use production_server::{AppState, DEMO_CONFIG, app, build, ops_app};

/// The example's in-flight limit (its `palisade.toml`).
const MAX_IN_FLIGHT: u32 = 50;

/// The public app and the operators' routes on one test server: the operations app first, the
/// public one for everything else.
fn served(stack: &Stack, state: &AppState) -> axum::Router {
    ops_app(stack, state.clone()).fallback_service(app(stack, state.clone(), None))
}

/// The example's stack and state, as its binary builds them (without environment overrides),
/// on a private overload signal.
fn demo(overload: &OverloadState) -> (Stack, AppState) {
    let config = PalisadeConfig::from_toml(DEMO_CONFIG).expect("the demo config is valid");
    build(config, overload).expect("valid stack")
}

fn requests(state: &AppState) -> &LimiterHandle {
    state.requests.as_ref().expect("the in-flight limit is on")
}

async fn start() -> (TestServer, Client, AppState) {
    start_with(|_| {}).await
}

/// The example's server with its configuration adjusted by `adjust`.
async fn start_with(adjust: impl FnOnce(&mut PalisadeConfig)) -> (TestServer, Client, AppState) {
    let mut config = PalisadeConfig::from_toml(DEMO_CONFIG).expect("the demo config is valid");
    adjust(&mut config);
    let (stack, state) = build(config, &OverloadState::new()).expect("valid stack");
    (
        TestServer::start(served(&stack, &state)).await,
        Client::new(),
        state,
    )
}

#[tokio::test]
async fn index_and_items() {
    let (server, client, _) = start().await;
    let index = client.get(&server.url("/")).await;
    assert_eq!(index.status, 200);
    assert!(index.text().contains("/api/items"));

    let items = client.get(&server.url("/api/items")).await;
    assert_eq!(items.status, 200);
    assert!(items.header("x-request-id").is_some());
    assert_eq!(
        items.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(items.header("cache-control"), Some("no-store, max-age=0"));

    // A valid incoming id is kept; an injected one is replaced, never echoed.
    let kept = client
        .get_with_header(&server.url("/"), "x-request-id", "trace-abc.123")
        .await;
    assert_eq!(kept.header("x-request-id"), Some("trace-abc.123"));
    let injected = client
        .get_with_header(&server.url("/"), "x-request-id", "a\tb<script>")
        .await;
    assert!(
        !injected
            .header("x-request-id")
            .unwrap_or_default()
            .contains("script")
    );
    assert_eq!(injected.header("x-request-id").map(str::len), Some(36));
    assert_eq!(items.json().as_array().map(Vec::len), Some(3));

    let one = client.get(&server.url("/api/items/2")).await;
    assert_eq!(one.json()["name"], "gate hinge");

    let missing = client.get(&server.url("/api/items/99")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(missing.json()["detail"], "no item with id 99");

    let not_a_number = client.get(&server.url("/api/items/abc")).await;
    assert_eq!(not_a_number.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn slow_is_bounded() {
    let (server, client, _) = start().await;
    let ok = client.get(&server.url("/api/slow?ms=20")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["slept_ms"], 20);
    let too_long = client.get(&server.url("/api/slow?ms=10001")).await;
    assert_eq!(too_long.status, 400);
    let junk = client.get(&server.url("/api/slow?ms=-1")).await;
    assert_eq!(junk.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn flaky_fails_and_heals_on_demand() {
    let (server, client, state) = start().await;
    assert_eq!(client.get(&server.url("/api/flaky")).await.status, 200);

    assert_eq!(
        client
            .post(&server.url("/admin/dependency/fail"))
            .await
            .status,
        200
    );
    assert!(state.dependency.is_failing());
    let failed = client.get(&server.url("/api/flaky")).await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.json()["detail"], "the dependency is failing");
    let status = client.get(&server.url("/admin/status")).await.json();
    assert_eq!(status["dependency"]["status"], "failing");
    assert_eq!(status["dependency"]["failures"], 1);
    // At least the task serving this very request.
    assert!(
        status["runtime"]["alive_tasks"].as_u64() >= Some(1),
        "{status}"
    );

    assert_eq!(
        client
            .post(&server.url("/admin/dependency/heal"))
            .await
            .status,
        200
    );
    assert_eq!(client.get(&server.url("/api/flaky")).await.status, 200);
    assert_eq!(
        client.get(&server.url("/admin/status")).await.json()["dependency"]["status"],
        "healthy"
    );

    // Admin actions are POST only.
    assert_eq!(
        client
            .get(&server.url("/admin/dependency/fail"))
            .await
            .status,
        405
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_503_and_recovers_when_requests_go_away() {
    // One test client sends all the load: without its per-client rate limit, which would answer
    // 429 before the server is ever overloaded.
    let (server, client, state) = start_with(|config| config.layers.rate_limit = false).await;
    // 45 slow requests of the default class (critical): the shedder starts shedding critical
    // requests from 35 in flight (70% of the limit), so between 35 and 40 of them are admitted.
    let slow: Vec<_> = (0..45)
        .map(|_| {
            let (client, url) = (Client::new(), server.url("/api/slow?ms=10000"));
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    for _ in 0..2000 {
        if requests(&state).count() >= 35 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        (35..=40).contains(&requests(&state).count()),
        "{}",
        requests(&state).count()
    );
    let shed = client
        .get_with_header(&server.url("/api/items"), "x-priority", "sheddable")
        .await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("5"));
    assert_eq!(shed.json()["reason"], "load_shed");
    // The outer layers mark the rejection like any other response.
    assert_eq!(
        shed.header("x-request-id").map(str::len),
        Some(36),
        "a UUIDv7 id"
    );
    assert_eq!(shed.header("x-content-type-options"), Some("nosniff"));

    // Clients that give up release their slots: their connections close, the handlers are dropped.
    for request in slow {
        request.abort();
    }
    for _ in 0..2000 {
        if requests(&state).count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        client
            .get_with_header(&server.url("/api/items"), "x-priority", "sheddable")
            .await
            .status,
        200
    );
    let status = client.get(&server.url("/admin/status")).await.json();
    assert_eq!(status["requests_in_flight"]["state"], "accepting");
    assert_eq!(status["requests_in_flight"]["max"], MAX_IN_FLIGHT);
    // The operators' routes are outside the in-flight limit: nothing counts while one is answered.
    assert_eq!(status["requests_in_flight"]["count"], 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_priority_requests_are_shed_first_and_admin_routes_never() {
    let overload = OverloadState::new();
    let (stack, state) = demo(&overload);
    let (server, client) = (
        TestServer::start(served(&stack, &state)).await,
        Client::new(),
    );
    // 30 slow requests: 60% of the limit, where the shedder already sheds every `sheddable`
    // request but still admits `critical` ones.
    let slow: Vec<_> = (0..30)
        .map(|_| {
            let (client, url) = (Client::new(), server.url("/api/slow?ms=10000"));
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    for _ in 0..2000 {
        if requests(&state).count() == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(requests(&state).count(), 30);
    assert!(
        (overload.level() - 0.6).abs() < 0.01,
        "the limiter publishes 30/50: {:?}",
        overload.sources()
    );
    let sheddable = client
        .get_with_header(&server.url("/api/items"), "x-priority", "sheddable")
        .await;
    assert_eq!(sheddable.status, 503);
    assert_eq!(sheddable.json()["reason"], "load_shed");
    assert_eq!(sheddable.json()["priority"], "sheddable");
    let critical = client
        .get_with_header(&server.url("/api/items"), "x-priority", "critical")
        .await;
    assert_eq!(critical.status, 200);
    assert_eq!(client.get(&server.url("/admin/status")).await.status, 200);
    for request in slow {
        request.abort();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn probes_follow_startup_and_report_the_dependency_without_failing_readiness() {
    let (stack, state) = demo(&OverloadState::new());
    let (server, client) = (
        TestServer::start(served(&stack, &state)).await,
        Client::new(),
    );
    let live = client.get(&server.url("/health/live")).await;
    assert_eq!(live.status, 200);
    assert_eq!(live.header("content-type"), Some("application/health+json"));
    assert_eq!(live.header("cache-control"), Some("no-store"));
    assert_eq!(client.get(&server.url("/livez")).await.status, 200);
    assert_eq!(
        client.get(&server.url("/health/startup")).await.status,
        503,
        "not started yet"
    );
    assert_eq!(
        client.get(&server.url("/health/ready")).await.status,
        503,
        "not started, not ready"
    );

    stack.health().mark_started();
    assert_eq!(client.get(&server.url("/health/startup")).await.status, 200);
    let ready = client.get(&server.url("/health/ready")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "pass");

    // A failing non-critical dependency shows as `warn` but keeps the pod in rotation. The
    // check's cached result lives 2 s, so this uses a fresh server whose check has not run.
    let (stack, state) = demo(&OverloadState::new());
    let failing = TestServer::start(served(&stack, &state)).await;
    stack.health().mark_started();
    state.dependency.fail();
    let warn = client.get(&failing.url("/health/ready")).await;
    assert_eq!(warn.status, 200, "{}", warn.text());
    assert_eq!(warn.json()["status"], "warn");
    assert!(warn.text().contains("dependency"), "{}", warn.text());
    assert_eq!(
        client.get(&failing.url("/health/live")).await.status,
        200,
        "liveness never checks dependencies"
    );
    failing.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_breaker_opens_on_a_failing_dependency_and_fails_fast() {
    let (server, client, state) = start().await;
    client.post(&server.url("/admin/dependency/fail")).await;
    for _ in 0..5 {
        assert_eq!(
            client.get(&server.url("/api/flaky")).await.status,
            502,
            "the dependency answers, failing"
        );
    }
    let calls_before = state.dependency.counts().0;
    let open = client.get(&server.url("/api/flaky")).await;
    assert_eq!(open.status, 503);
    assert_eq!(open.json()["reason"], "circuit_open");
    let retry: u64 = open.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=10).contains(&retry),
        "the remaining open time, rounded up: {retry}"
    );
    assert_eq!(
        state.dependency.counts().0,
        calls_before,
        "an open breaker does not call the dependency"
    );
    let status = client.get(&server.url("/admin/status")).await.json();
    assert_eq!(status["breaker"]["state"], "open");

    // Operators can reset it; with the dependency healed, calls succeed again.
    client.post(&server.url("/admin/dependency/heal")).await;
    assert_eq!(
        client
            .post(&server.url("/admin/breaker/reset"))
            .await
            .json()["state"],
        "closed"
    );
    assert_eq!(client.get(&server.url("/api/flaky")).await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_by_the_client_and_never_seen() {
    let (server, client, state) = start().await;
    let before = state.dependency.counts();
    let armed = client
        .post(&server.url("/admin/dependency/fail_next?calls=2"))
        .await;
    assert_eq!(armed.status, 200);
    let recovered = client.get(&server.url("/api/flaky")).await;
    assert_eq!(recovered.status, 200, "{}", recovered.text());
    assert_eq!(recovered.json()["data"], "fresh data from the dependency");
    let after = state.dependency.counts();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (3, 2),
        "two 503s retried, the third attempt answered"
    );
    let status = client.get(&server.url("/admin/status")).await.json();
    assert_eq!(status["breaker"]["state"], "closed");
    server.shutdown().await;
}

#[tokio::test]
async fn an_open_breaker_refuses_at_once_without_retrying() {
    let (server, client, state) = start().await;
    // More transient failures than the client has attempts: every attempt is seen by the
    // breaker, which opens after 5 in a row, in the middle of the second call.
    client
        .post(&server.url("/admin/dependency/fail_next?calls=100"))
        .await;
    let first = client.get(&server.url("/api/flaky")).await;
    assert_eq!(first.status, 502, "three 503s: the retries ran out");
    let second = client.get(&server.url("/api/flaky")).await;
    assert_eq!(second.status, 503);
    assert_eq!(second.json()["reason"], "circuit_open");
    assert_eq!(
        state.dependency.counts().0,
        5,
        "the breaker refused the sixth attempt instead of sending it"
    );
    let refused = client.get(&server.url("/api/flaky")).await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(state.dependency.counts().0, 5, "nothing sent while open");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_api_fills_its_bulkhead_while_admin_keeps_its_own() {
    let (server, client, state) = start().await;
    // Critical (the header may lower, never raise; critical is the default) slow requests: the
    // shedder admits them until about 35 in flight, the api bulkhead runs them in its 40 slots.
    let slow: Vec<_> = (0..30)
        .map(|_| {
            let (client, url) = (Client::new(), server.url("/api/slow?ms=10000"));
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    for _ in 0..2000 {
        if state.api_bulkhead.bulkhead().in_flight() == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = client.get(&server.url("/admin/status")).await;
    assert_eq!(status.status, 200, "admin has slots of its own");
    let bulkheads = status.json()["bulkheads"].clone();
    assert_eq!(bulkheads[0]["name"], "api");
    assert_eq!(bulkheads[0]["in_flight"], 30);
    assert_eq!(bulkheads[1]["name"], "admin");
    assert_eq!(
        bulkheads[1]["in_flight"], 1,
        "only the status request itself"
    );
    for request in slow {
        request.abort();
    }
    server.shutdown().await;
}

#[test]
fn the_demo_config_spells_out_the_api_security_preset() {
    let config = PalisadeConfig::from_toml(DEMO_CONFIG).unwrap();
    assert_eq!(
        config.security_headers,
        palisade::security_headers::SecurityHeadersConfig::api()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_is_rate_limited_with_429_and_the_ietf_fields() {
    let (server, client, _state) = start().await;
    // The example allows each client IP 20 requests a second with bursts of 40.
    let mut statuses = Vec::new();
    let started = std::time::Instant::now();
    for _ in 0..100 {
        statuses.push(client.get(&server.url("/api/items")).await);
    }
    // The burst, plus one request for every 50 ms the loop took (more on a slow machine).
    let refilled = usize::try_from(started.elapsed().as_millis() / 50 + 1).unwrap_or(usize::MAX);
    let ok = statuses.iter().filter(|r| r.status == 200).count();
    assert!(
        (40..=40 + refilled).contains(&ok),
        "{ok} admitted of 100 (+{refilled} refilled)"
    );
    let limited = statuses.iter().find(|r| r.status == 429).expect("a 429");
    assert_eq!(limited.json()["reason"], "quota_exceeded");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert!(
        limited
            .header("ratelimit-policy")
            .unwrap()
            .contains("\"per_ip\";q=20;w=1"),
        "{:?}",
        limited.header("ratelimit-policy")
    );
    assert!(
        limited
            .header("ratelimit")
            .unwrap()
            .starts_with("\"per_ip\";r=0")
    );
    // The refusal carries the request id and the security headers like any answer.
    assert_eq!(limited.header("x-request-id").map(str::len), Some(36));
    assert!(limited.header("content-security-policy").is_some());
    // Probes are answered before the limit.
    assert_eq!(client.get(&server.url("/health/live")).await.status, 200);
    server.shutdown().await;
}
