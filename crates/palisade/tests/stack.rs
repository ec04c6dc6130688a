//! The preset stack on a real server: every layer present, in the documented order.

use std::time::Duration;

use axum::{Router, routing::get};
use palisade::{
    PalisadeConfig, Stack,
    concurrency_limit::Watermark,
    core::{OverloadState, Priority},
    preset,
};
use palisade_testkit::Client;
use support::{Hold, Running};

mod support;

/// A stack on a private overload signal, with a tiny in-flight limit: shedding from 2 requests
/// until back to 1, at most 4.
fn small(mut config: PalisadeConfig) -> Stack {
    config.concurrency.max_in_flight = 4;
    config.concurrency.high_water = Watermark::Count(2);
    config.concurrency.low_water = Watermark::Count(1);
    config.server.drain.propagation_delay = Duration::ZERO;
    let stack = Stack::builder()
        .config(config)
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    stack.health().mark_started();
    stack
}

fn app(stack: &Stack, hold: &Hold) -> Router {
    stack.apply(
        Router::new()
            .route("/", get(|| async { "hello" }))
            .route("/hold", hold.route())
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/upload",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
            ),
    )
}

fn assert_marked(response: &palisade_testkit::TestResponse, what: &str) {
    assert!(
        response.header("x-request-id").is_some(),
        "{what}: no request id"
    );
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{what}: no security headers"
    );
}

async fn fill_the_limit(server: &Running, hold: &Hold) -> Vec<tokio::task::JoinHandle<u16>> {
    let requests: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/hold");
            tokio::spawn(async move { Client::new().get(&url).await.status.as_u16() })
        })
        .collect();
    hold.entered(2).await;
    requests
}

#[tokio::test]
async fn a_limiter_rejection_carries_the_request_id_and_security_headers() {
    let mut config = PalisadeConfig::default();
    config.layers.load_shed = false; // only the limiter decides here
    let stack = small(config);
    let hold = Hold::new();
    let server = Running::start(app(&stack, &hold), stack.server()).await;
    let in_flight = fill_the_limit(&server, &hold).await;

    let client = Client::new();
    let rejected = client.get(&server.url("/")).await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.json()["reason"], "concurrency_limit");
    assert!(rejected.header("retry-after").is_some());
    assert_marked(&rejected, "limiter rejection");

    // A valid incoming id is kept on the rejection too: outside the limiter.
    let rejected = client
        .get_with_header(&server.url("/"), "x-request-id", "trace-me-123")
        .await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.header("x-request-id"), Some("trace-me-123"));

    hold.release();
    for request in in_flight {
        assert_eq!(request.await.unwrap(), 200, "admitted requests complete");
    }
    assert_eq!(client.get(&server.url("/")).await.status, 200);
}

#[tokio::test]
async fn probes_are_answered_while_the_app_sheds() {
    let stack = small(PalisadeConfig::default());
    let hold = Hold::new();
    let server = Running::start(app(&stack, &hold), stack.server()).await;
    let _held = fill_the_limit(&server, &hold).await;
    let client = Client::new();
    assert_eq!(
        client.get(&server.url("/")).await.status,
        503,
        "the app sheds"
    );

    let live = client.get(&server.url("/health/live")).await;
    assert_eq!(live.status, 200, "liveness is never shed");
    assert_marked(&live, "liveness");
    assert_eq!(client.get(&server.url("/health/startup")).await.status, 200);
    // Readiness is answered by the health layer (not shed by the limiter) and reports the
    // overload, so the load balancer sends new traffic elsewhere.
    let ready = client.get(&server.url("/health/ready")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.header("content-type"),
        Some("application/health+json")
    );
    assert_marked(&ready, "readiness");
    hold.release();
}

#[tokio::test]
async fn the_load_shedder_sits_outside_the_limiter_and_its_rejections_are_marked_too() {
    let stack = small(PalisadeConfig::default());
    let hold = Hold::new();
    let server = Running::start(app(&stack, &hold), stack.server()).await;
    let _held = fill_the_limit(&server, &hold).await;
    // The limiter is shedding, which the overload signal reports as level 1: the shedder
    // rejects everything below critical_plus before the limiter sees it.
    let shed = Client::new()
        .get_with_header(&server.url("/"), "x-priority", Priority::Sheddable.as_str())
        .await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.json()["reason"], "load_shed");
    assert_marked(&shed, "shedder rejection");
    hold.release();
}

#[tokio::test]
async fn the_timeout_and_the_body_limit_bound_each_request_inside_the_stack() {
    let mut config = PalisadeConfig::default();
    config.timeout.timeout = Duration::from_millis(100);
    config.limits.max_body_bytes = 1024;
    let stack = small(config);
    let hold = Hold::new();
    let server = Running::start(app(&stack, &hold), stack.server()).await;
    let client = Client::new();
    let timed_out = client.get(&server.url("/slow")).await;
    assert_eq!(timed_out.status, 503);
    assert_eq!(timed_out.json()["reason"], "timeout");
    assert_marked(&timed_out, "timeout");

    let big = http::Request::post(server.url("/upload"))
        .body(http_body_util::Full::from(vec![b'x'; 4096]))
        .unwrap();
    let too_large = client.send(big).await;
    assert_eq!(too_large.status, 413);
    assert_marked(&too_large, "body limit");
    let small_body = http::Request::post(server.url("/upload"))
        .body(http_body_util::Full::from(vec![b'x'; 100]))
        .unwrap();
    assert_eq!(client.send(small_body).await.text(), "100");
}

#[tokio::test]
async fn named_bulkheads_are_one_pool_however_often_they_are_asked_for() {
    let config =
        PalisadeConfig::from_toml("[bulkheads.reports]\nmax_concurrent = 1\nmax_queued = 0\n")
            .unwrap();
    let stack = small(config);
    let hold = Hold::new();
    let routes = Router::new()
        .route("/a", hold.route())
        .route_layer(stack.bulkhead("reports").unwrap())
        .merge(
            Router::new()
                .route("/b", get(|| async { "b" }))
                .route_layer(stack.bulkhead("reports").unwrap()),
        );
    let server = Running::start(stack.apply(routes), stack.server()).await;
    let url = server.url("/a");
    let waiting = tokio::spawn(async move { Client::new().get(&url).await.status });
    hold.entered(1).await;
    let rejected = Client::new().get(&server.url("/b")).await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.json()["reason"], "bulkhead_queue_full");
    assert_marked(&rejected, "bulkhead rejection");
    hold.release();
    assert_eq!(waiting.await.unwrap(), 200);
    assert_eq!(Client::new().get(&server.url("/b")).await.status, 200);

    let err = stack.bulkhead("nope").unwrap_err();
    assert_eq!(err.key(), "bulkheads.nope");
}

#[tokio::test]
async fn named_circuit_breakers_guard_routes_and_expose_their_controls() {
    let config =
        PalisadeConfig::from_toml("[circuit_breakers.payments]\nwait_in_open = 60\n").unwrap();
    let stack = small(config);
    let routes = Router::new()
        .route("/pay", get(|| async { "paid" }))
        .route_layer(stack.circuit_breaker("payments").unwrap());
    let server = Running::start(stack.apply(routes), stack.server()).await;
    let client = Client::new();
    assert_eq!(client.get(&server.url("/pay")).await.status, 200);
    stack.breaker("payments").unwrap().force_open();
    let rejected = client.get(&server.url("/pay")).await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.json()["reason"], "circuit_open");
    assert_marked(&rejected, "breaker rejection");
    assert_eq!(stack.breaker("payments").unwrap().name(), "payments");
}

#[tokio::test]
async fn the_observe_only_preset_serves_what_it_would_reject() {
    let mut builder = preset::observe_only();
    builder.config_mut().concurrency.max_in_flight = 3;
    builder.config_mut().concurrency.high_water = Watermark::Count(2);
    builder.config_mut().concurrency.low_water = Watermark::Count(1);
    let stack = builder
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    stack.health().mark_started();
    let hold = Hold::new();
    let server = Running::start(app(&stack, &hold), stack.server()).await;
    let _held = fill_the_limit(&server, &hold).await;
    let client = Client::new();
    assert_eq!(
        client.get(&server.url("/")).await.status,
        200,
        "observed, not enforced"
    );
    // Readiness reports the overload as a warning and stays in rotation.
    assert_eq!(client.get(&server.url("/health/ready")).await.status, 200);
    hold.release();
}

#[tokio::test]
async fn layers_switched_off_are_absent() {
    let mut config = PalisadeConfig::default();
    config.layers.request_id = false;
    config.layers.security_headers = false;
    config.layers.health = false;
    let stack = small(config);
    let hold = Hold::new();
    let server = Running::start(app(&stack, &hold), stack.server()).await;
    let client = Client::new();
    let response = client.get(&server.url("/")).await;
    assert_eq!(response.status, 200);
    assert!(response.header("x-request-id").is_none());
    assert!(response.header("x-content-type-options").is_none());
    assert_eq!(client.get(&server.url("/health/live")).await.status, 404);
}

/// The usual configurations get stacks without switch levels (one for each combination of the two
/// layers off by default) and any other combination the general one (`Stack::apply`): from
/// outside, the layers that are on behave the same in all.
#[tokio::test]
async fn the_layers_that_are_on_behave_alike_whichever_others_are_off() {
    type SwitchOff = fn(&mut PalisadeConfig);
    let switched_off: [(&str, SwitchOff); 6] = [
        ("nothing", |_| {}),
        ("nothing, a resource monitor and a rate limit on,", |c| {
            *c = PalisadeConfig::from_toml(
                "[overload.fds]\nenabled = true\n[rate_limit]\ndefault_policies = [\"per_ip\"]\n\
                 [rate_limit.policies.per_ip]\nrate = 10\nperiod = 60\n",
            )
            .unwrap();
        }),
        ("nothing, a resource monitor on,", |c| {
            *c = PalisadeConfig::from_toml("[overload.fds]\nenabled = true\n").unwrap();
        }),
        ("nothing, a rate limit on,", |c| {
            *c = PalisadeConfig::from_toml(
                "[rate_limit]\ndefault_policies = [\"per_ip\"]\n\
                 [rate_limit.policies.per_ip]\nrate = 10\nperiod = 60\n",
            )
            .unwrap();
        }),
        ("timeout", |c| c.layers.timeout = false),
        ("load_shed", |c| c.layers.load_shed = false),
    ];
    for (off, switch) in switched_off {
        let mut config = PalisadeConfig::default();
        switch(&mut config);
        config.limits.max_body_bytes = 16;
        config.timeout.timeout = Duration::from_millis(100);
        let stack = small(config);
        // Each case reaches the stack it is named for.
        let layers = stack.layers();
        assert_eq!(layers.close_connections.is_some(), off.contains("monitor"));
        assert_eq!(layers.rate_limit.is_some(), off.contains("rate limit"));
        let hold = Hold::new();
        let server = Running::start(app(&stack, &hold), stack.server()).await;
        let client = Client::new();

        let hello = client.get(&server.url("/")).await;
        assert_eq!(hello.status, 200, "{off} off");
        assert_marked(&hello, &format!("{off} off: hello"));
        let probe = client.get(&server.url("/health/live")).await;
        assert_eq!(probe.status, 200, "{off} off: probe");
        if off != "timeout" {
            let late = client.get(&server.url("/slow")).await;
            assert_eq!(late.status, 503, "{off} off: timeout");
            assert_marked(&late, &format!("{off} off: timeout"));
        }
        let big = http::Request::post(server.url("/upload"))
            .body(http_body_util::Full::from(vec![b'x'; 64]))
            .unwrap();
        let too_big = client.send(big).await;
        assert_eq!(too_big.status, 413, "{off} off: body limit");
        assert_marked(&too_big, &format!("{off} off: body limit"));
        let request = "GET /a%00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let hostile =
            palisade_testkit::raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(5))
                .await;
        assert!(hostile.starts_with("HTTP/1.1 400"), "{off} off: {hostile}");
        assert!(hostile.contains("x-request-id: "), "{off} off: {hostile}");
        assert!(
            hostile.contains("x-content-type-options: nosniff"),
            "{off} off: {hostile}"
        );
        // Where a rate limit is on (10 a minute; hello, slow and upload counted so far), it refuses.
        if off.contains("rate limit") {
            let mut statuses = Vec::new();
            for _ in 0..10 {
                statuses.push(client.get(&server.url("/")).await.status.as_u16());
            }
            assert!(statuses.contains(&429), "{off} off: {statuses:?}");
        }
    }
}

#[tokio::test]
async fn hostile_targets_are_refused_before_routing_with_the_id_and_headers() {
    let stack = small(PalisadeConfig::default());
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reached.clone();
    // A wildcard route that would match every one of these targets if the router saw it.
    let routes = Router::new().route(
        "/{*rest}",
        get(move || async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "reached"
        }),
    );
    let server = Running::start(stack.apply(routes), stack.server()).await;
    for target in ["/..%2f..%2fetc/passwd", "/a/%2e%2e/b", "/a%00b", "//x"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer =
            palisade_testkit::raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(5))
                .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
        assert!(answer.contains("application/problem+json"), "{target}");
        assert!(answer.contains("x-request-id: "), "{target}: no request id");
        assert!(
            answer.contains("x-content-type-options: nosniff"),
            "{target}"
        );
    }
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no hostile request reached a handler"
    );
    // Clean paths pass.
    assert_eq!(Client::new().get(&server.url("/a..b/c")).await.status, 200);
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_configured_rate_limit_answers_429_before_capacity_and_never_limits_probes() {
    let config = PalisadeConfig::from_toml(
        r#"
        [rate_limit]
        default_policies = ["per_ip"]
        [rate_limit.policies.per_ip]
        rate = 2
        period = 60
        "#,
    )
    .unwrap();
    let stack = small(config);
    let hold = Hold::new();
    let server = Running::start(app(&stack, &hold), stack.server()).await;
    let client = Client::new();
    assert_eq!(client.get(&server.url("/")).await.status, 200);
    assert_eq!(client.get(&server.url("/")).await.status, 200);
    let limited = client.get(&server.url("/")).await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert!(limited.header("ratelimit").is_some());
    assert_marked(&limited, "rate limit refusal");
    for _ in 0..5 {
        assert_eq!(client.get(&server.url("/health/live")).await.status, 200);
    }
}

#[tokio::test]
async fn without_a_policy_there_is_no_rate_limit() {
    let stack = small(PalisadeConfig::default());
    assert!(stack.layers().rate_limit.is_none());
    assert!(stack.layers().request_guard.is_some());
}
