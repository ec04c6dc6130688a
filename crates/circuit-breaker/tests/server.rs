//! The server layer on a real server with a real client: a route whose dependency fails on
//! demand opens its breaker, then gets fast 503s with `Retry-After` and a problem body without
//! touching the dependency, and recovers once the dependency heals. Other routes are untouched
//! (per-route scope) and the state is shared by every connection.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State as AxumState, http::StatusCode, routing::get};
use palisade_circuit_breaker::{Breaker, CircuitBreakerLayer, State};
use palisade_testkit::{Client, TestServer};
use tokio::sync::mpsc;

/// A dependency that fails on demand and counts its calls.
#[derive(Clone, Default)]
struct Dependency {
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Dependency {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn flaky(AxumState(dependency): AxumState<Dependency>) -> (StatusCode, &'static str) {
    dependency.calls.fetch_add(1, Ordering::SeqCst);
    if dependency.failing.load(Ordering::SeqCst) {
        (StatusCode::BAD_GATEWAY, "the dependency is failing")
    } else {
        (StatusCode::OK, "fresh data")
    }
}

/// The application's routes, before the breaker is added with `route_layer`.
fn routes() -> Router<Dependency> {
    Router::new()
        .route("/flaky", get(flaky))
        .route("/stable", get(|| async { "stable" }))
}

/// A fresh client per request: a new connection each time, so state must be shared across
/// connections to be seen at all.
async fn fetch(server: &TestServer, path: &str) -> palisade_testkit::TestResponse {
    Client::new().get(&server.url(path)).await
}

#[tokio::test]
async fn an_open_breaker_answers_fast_503s_with_retry_after_and_a_problem_body() {
    let breaker = Breaker::builder()
        .name("flaky")
        .wait_in_open(Duration::from_secs(30))
        .build()
        .unwrap();
    let dependency = Dependency::default();
    let app = routes()
        .route_layer(CircuitBreakerLayer::new(breaker.clone()))
        .with_state(dependency.clone());
    let server = TestServer::start(app).await;
    dependency.failing.store(true, Ordering::SeqCst);
    // The defaults: 5 failures (in a row, and 100% of the window's 5 calls) open the breaker.
    for _ in 0..5 {
        assert_eq!(fetch(&server, "/flaky").await.status, 502);
    }
    assert_eq!(breaker.state(), State::Open);
    let rejected = fetch(&server, "/flaky").await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.header("retry-after"), Some("30"));
    assert_eq!(
        rejected.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(rejected.header("cache-control"), Some("no-store"));
    let problem = rejected.json();
    assert_eq!(problem["reason"], "circuit_open");
    assert_eq!(problem["status"], 503);
    assert_eq!(
        dependency.calls(),
        5,
        "the rejected request never reached the dependency"
    );
    // One breaker for the whole router: the other route is protected by the same one.
    assert_eq!(fetch(&server, "/stable").await.status, 503);
    server.shutdown().await;
}

#[tokio::test]
async fn per_route_breakers_open_alone_and_recover_after_the_dependency_heals() {
    let (changes, mut seen) = mpsc::unbounded_channel();
    let layer = CircuitBreakerLayer::per_route(
        Breaker::builder()
            .name("http")
            .consecutive_failures(3)
            .wait_in_open(Duration::from_millis(300))
            .automatic_transition(true)
            .on_state_change(move |c| {
                let _ = changes.send((c.breaker.to_owned(), c.from, c.to));
            }),
    )
    .unwrap();
    let registry = layer.registry().unwrap().clone();
    let dependency = Dependency::default();
    let server =
        TestServer::start(routes().route_layer(layer).with_state(dependency.clone())).await;
    let mut next_change = async || {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("a state change within 10 s")
            .expect("channel open")
    };

    assert_eq!(fetch(&server, "/stable").await.status, 200);
    dependency.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(fetch(&server, "/flaky").await.status, 502);
    }
    assert_eq!(
        next_change().await,
        ("http:/flaky".to_owned(), State::Closed, State::Open)
    );
    let rejected = fetch(&server, "/flaky").await;
    assert_eq!(rejected.status, 503);
    assert_eq!(
        rejected.header("retry-after"),
        Some("1"),
        "300 ms, rounded up"
    );
    assert_eq!(dependency.calls(), 3);
    // The other route has its own breaker.
    assert_eq!(fetch(&server, "/stable").await.status, 200);
    let flaky = registry.get("/flaky").unwrap();
    assert_eq!(flaky.state(), State::Open);
    assert_eq!(registry.get("/stable").unwrap().state(), State::Closed);

    // The dependency heals; the timer moves the breaker to half-open without any request.
    dependency.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        next_change().await,
        ("http:/flaky".to_owned(), State::Open, State::HalfOpen)
    );
    for _ in 0..3 {
        assert_eq!(fetch(&server, "/flaky").await.status, 200);
    }
    assert_eq!(
        next_change().await,
        ("http:/flaky".to_owned(), State::HalfOpen, State::Closed)
    );
    assert_eq!(flaky.state(), State::Closed);
    assert_eq!(fetch(&server, "/flaky").await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_probe_reopens_on_the_real_server() {
    let (changes, mut seen) = mpsc::unbounded_channel();
    let breaker = Breaker::builder()
        .consecutive_failures(1)
        .wait_in_open(Duration::from_millis(200))
        .automatic_transition(true)
        .on_state_change(move |c| {
            let _ = changes.send((c.from, c.to));
        })
        .build()
        .unwrap();
    let dependency = Dependency::default();
    dependency.failing.store(true, Ordering::SeqCst);
    let app = routes()
        .route_layer(CircuitBreakerLayer::new(breaker.clone()))
        .with_state(dependency.clone());
    let server = TestServer::start(app).await;
    let mut next_change = async || {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("a state change within 10 s")
            .expect("channel open")
    };
    assert_eq!(fetch(&server, "/flaky").await.status, 502);
    assert_eq!(next_change().await, (State::Closed, State::Open));
    assert_eq!(fetch(&server, "/flaky").await.status, 503);
    assert_eq!(next_change().await, (State::Open, State::HalfOpen));
    // The probe reaches the still-failing dependency; the breaker reopens at once.
    assert_eq!(fetch(&server, "/flaky").await.status, 502);
    assert_eq!(next_change().await, (State::HalfOpen, State::Open));
    assert_eq!(fetch(&server, "/flaky").await.status, 503);
    assert_eq!(dependency.calls(), 2);
    server.shutdown().await;
}
