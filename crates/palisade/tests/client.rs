//! The client stack against a real upstream on 127.0.0.1, through hyper's client.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{Router, http::HeaderMap, http::StatusCode, routing::get};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use palisade::{
    ClientLayer, PalisadeConfig, Stack,
    circuit_breaker::{CircuitBreakerConfig, State},
    client::ClientError,
    core::{Priority, RequestId},
    retry::{ReplayBody, RetryConfig},
};
use palisade_testkit::TestServer;
use tower::{Layer, ServiceExt};

type Hyper = HyperClient<HttpConnector, ReplayBody<Empty<Bytes>>>;

fn hyper() -> Hyper {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

/// An upstream that answers 503 to its first `failures` calls, then 200, and counts calls; it
/// echoes the propagated headers.
async fn upstream(failures: u32) -> (TestServer, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new().route(
        "/",
        get(move |headers: HeaderMap| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let echo = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                let status = if n < failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                (
                    status,
                    format!("{} {}", echo("x-request-id"), echo("x-priority")),
                )
            }
        }),
    );
    (TestServer::start(app).await, calls)
}

fn get_request(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

/// The default retries with 1 ms of backoff, so the tests do not wait.
fn quick_retries() -> RetryConfig {
    let mut retry = RetryConfig::default();
    retry.base_delay = Duration::from_millis(1);
    retry.max_delay = Duration::from_millis(1);
    retry
}

/// A breaker that opens after `failures` failed attempts in a row.
fn open_after_failures_in_a_row(failures: u32) -> CircuitBreakerConfig {
    let mut breaker = CircuitBreakerConfig::default();
    breaker.consecutive_failures = failures;
    breaker
}

#[tokio::test]
async fn a_transient_503_is_retried_and_the_call_carries_id_and_priority() {
    let (server, calls) = upstream(1).await;
    let client = ClientLayer::builder("transient")
        .retry(quick_retries())
        .build()
        .unwrap()
        .layer(hyper());
    let mut request = get_request(&server.url("/"));
    request
        .extensions_mut()
        .insert("order-42".parse::<RequestId>().unwrap());
    request.extensions_mut().insert(Priority::Sheddable);
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "the retry recovered");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        format!("order-42 {}", Priority::Sheddable.as_str()),
        "the retried attempt carried the request id and the priority"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn an_open_breaker_refuses_at_once_and_stops_the_retries() {
    let (server, calls) = upstream(u32::MAX).await;
    let layer = ClientLayer::builder("down")
        .retry(quick_retries())
        // A client's breaker decides on its failure rate by default; a run of failures is the
        // quicker trigger to test.
        .circuit_breaker(open_after_failures_in_a_row(5))
        .build()
        .unwrap();
    let client = layer.layer(hyper());
    // 5 failed attempts in a row open the breaker: the first call makes 3, the second 2 and is
    // refused on its third.
    let first = client
        .clone()
        .oneshot(get_request(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(first.status(), 503, "retries exhausted: the last answer");
    drop(first);
    let second = client
        .clone()
        .oneshot(get_request(&server.url("/")))
        .await
        .unwrap_err();
    assert!(second.is_circuit_open(), "{second}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "the breaker saw every attempt"
    );
    assert_eq!(layer.breaker().state(), State::Open);

    let refused = client
        .oneshot(get_request(&server.url("/")))
        .await
        .unwrap_err();
    assert!(matches!(refused, ClientError::CircuitOpen(ref r) if r.retry_in() > Duration::ZERO));
    assert_eq!(calls.load(Ordering::SeqCst), 5, "nothing sent while open");
    server.shutdown().await;
}

#[tokio::test]
async fn timed_out_attempts_are_retried_and_counted_by_the_breaker() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let hanging = Router::new().route(
        "/",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }
        }),
    );
    let server = TestServer::start(hanging).await;
    let layer = ClientLayer::builder("hanging")
        .attempt_timeout(Duration::from_millis(50))
        .retry(quick_retries())
        .circuit_breaker(open_after_failures_in_a_row(3))
        .build()
        .unwrap();
    let err = layer
        .layer(hyper())
        .oneshot(get_request(&server.url("/")))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "each attempt timed out");
    assert_eq!(
        layer.breaker().state(),
        State::Open,
        "the breaker counted the timeouts as failures"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_stack_builds_one_budget_and_breaker_per_client_name() {
    let config = PalisadeConfig::from_toml(
        "[clients.inventory.circuit_breaker]\nconsecutive_failures = 2\n",
    )
    .unwrap();
    let stack = Stack::builder()
        .config(config)
        .overload_state(palisade::core::OverloadState::new())
        .build()
        .unwrap();
    let (server, calls) = upstream(u32::MAX).await;
    let one = stack.client("inventory", hyper()).unwrap();
    let other = stack.client("inventory", hyper()).unwrap();
    // Two failed attempts through `one` open the breaker `other` uses too.
    let _ = one.oneshot(get_request(&server.url("/"))).await;
    let refused = other
        .oneshot(get_request(&server.url("/")))
        .await
        .unwrap_err();
    assert!(refused.is_circuit_open(), "{refused}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let layer = stack.client_layer("inventory").unwrap();
    assert_eq!(layer.breaker().name(), "inventory");
    assert_eq!(layer.breaker().state(), State::Open);
    assert_eq!(
        stack.client("nowhere", hyper()).unwrap_err().key(),
        "clients.nowhere"
    );
    server.shutdown().await;
}
