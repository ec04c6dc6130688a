//! A real server on loopback and a real client: a slow handler is answered at the deadline and
//! the connection keeps serving.

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use palisade_testkit::{Client, TestServer};
use palisade_timeout::TimeoutLayer;

#[tokio::test]
async fn a_slow_handler_is_answered_503_at_the_deadline_and_the_server_keeps_serving() {
    let timeout = Duration::from_millis(200);
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "slow"
            }),
        )
        .layer(TimeoutLayer::new(timeout).unwrap());
    let server = TestServer::start(app).await;
    let client = Client::new();

    let fast = client.get(&server.url("/fast")).await;
    assert_eq!(fast.status, 200);
    assert_eq!(fast.text(), "fast");

    let started = Instant::now();
    let slow = client.get(&server.url("/slow")).await;
    let waited = started.elapsed();
    assert_eq!(slow.status, 503);
    assert_eq!(
        slow.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(slow.json()["reason"], "timeout");
    // Not before the deadline, and not after the handler's 30 s.
    assert!(waited >= timeout, "answered after {waited:?}");
    assert!(
        waited < Duration::from_secs(30),
        "answered after {waited:?}"
    );

    let again = client.get(&server.url("/fast")).await;
    assert_eq!(again.status, 200);
    server.shutdown().await;
}
