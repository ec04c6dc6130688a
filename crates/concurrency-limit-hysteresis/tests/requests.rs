//! The request limiter on a real server with a real client: saturation, 503 + Retry-After,
//! recovery only at the low-water mark, the critical reserve, permits held by streaming bodies,
//! state shared across routes and connections, and observe-only mode.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, LimiterHandle, Watermark};
use palisade_core::{EnforcementMode, OverloadState, Priority};
use palisade_testkit::{Client, TestResponse, TestServer};
use tokio::sync::{Semaphore, mpsc};

/// Requests to `/held` wait until the test adds permits to the gate.
#[derive(Clone)]
struct Gate(Arc<Semaphore>);

impl Gate {
    fn new() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }
    fn open(&self, n: usize) {
        self.0.add_permits(n);
    }
}

async fn held(State(gate): State<Gate>) -> &'static str {
    gate.0.acquire().await.expect("gate open").forget();
    "released"
}

/// Marks requests carrying `x-critical` as `CriticalPlus`, as the load-shedding layer would.
async fn classify(mut request: Request, next: Next) -> Response {
    if request.headers().contains_key("x-critical") {
        Priority::CriticalPlus.assign(&mut request);
    }
    next.run(request).await
}

fn limiter(max: u32, high: u32, low: u32) -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::builder()
        .max_in_flight(max)
        .high_water(Watermark::count(high))
        .low_water(Watermark::count(low))
        .retry_after(Duration::from_secs(2))
        .overload_state(OverloadState::new())
        .build()
        .expect("valid limiter")
}

fn app(limit: ConcurrencyLimitLayer, gate: Gate) -> Router {
    Router::new()
        .route("/held", get(held))
        .route("/fast", get(|| async { "fast" }))
        .with_state(gate)
        .layer(limit)
        .layer(middleware::from_fn(classify))
}

/// Waits (briefly, yielding) until the limiter's state is what the test expects: requests reach
/// the server on other tasks, so the test synchronises on the state itself, not on a delay.
async fn wait_for(handle: &LimiterHandle, count: u32, shedding: bool) {
    for _ in 0..2000 {
        if handle.count() == count && handle.is_shedding() == shedding {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("limiter at {handle:?}, wanted count {count} shedding {shedding}");
}

fn spawn_get(client: &Client, url: String) -> tokio::task::JoinHandle<TestResponse> {
    let client = client.clone();
    tokio::spawn(async move { client.get(&url).await })
}

async fn get_with(client: &Client, url: &str, header: Option<&str>) -> TestResponse {
    let mut request = http::Request::get(url);
    if let Some(name) = header {
        request = request.header(name, "1");
    }
    client.send(request.body(Full::default()).unwrap()).await
}

fn assert_rejected(response: &TestResponse) {
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("retry-after"), Some("2"));
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(response.json()["reason"], "concurrency_limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_sheds_until_the_low_water_mark() {
    let (limit, gate) = (limiter(10, 8, 4), Gate::new());
    let handle = limit.handle();
    let server = TestServer::start(app(limit, gate.clone())).await;
    let client = Client::new();

    let held: Vec<_> = (0..8)
        .map(|_| spawn_get(&client, server.url("/held")))
        .collect();
    wait_for(&handle, 8, true).await;
    assert_rejected(&client.get(&server.url("/fast")).await);

    // 5 in flight is below high water but above low water: still shedding.
    gate.open(3);
    wait_for(&handle, 5, true).await;
    assert_rejected(&client.get(&server.url("/fast")).await);

    // 4 is the low-water mark: accepting again.
    gate.open(1);
    wait_for(&handle, 4, false).await;
    let fast = client.get(&server.url("/fast")).await;
    assert_eq!((fast.status.as_u16(), fast.text().as_str()), (200, "fast"));

    gate.open(4);
    for request in held {
        assert_eq!(
            request.await.unwrap().text(),
            "released",
            "admitted requests all complete"
        );
    }
    wait_for(&handle, 0, false).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_requests_use_the_reserve_but_never_pass_the_maximum() {
    let (limit, gate) = (limiter(10, 8, 4), Gate::new());
    let handle = limit.handle();
    let server = TestServer::start(app(limit, gate.clone())).await;
    let client = Client::new();

    let mut held: Vec<_> = (0..8)
        .map(|_| spawn_get(&client, server.url("/held")))
        .collect();
    wait_for(&handle, 8, true).await;
    assert_rejected(&get_with(&client, &server.url("/fast"), None).await);
    let critical = get_with(&client, &server.url("/fast"), Some("x-critical")).await;
    assert_eq!(critical.status, 200, "critical traffic survives the spike");

    // Fill the reserve with two held critical requests: then even critical requests are refused.
    for _ in 0..2 {
        let (client, url) = (client.clone(), server.url("/held"));
        held.push(tokio::spawn(async move {
            get_with(&client, &url, Some("x-critical")).await
        }));
    }
    wait_for(&handle, 10, true).await;
    assert_rejected(&get_with(&client, &server.url("/fast"), Some("x-critical")).await);

    gate.open(10);
    for request in held {
        assert_eq!(request.await.unwrap().status, 200);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_holds_its_slot_until_the_body_ends() {
    let (tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let limit = limiter(10, 8, 4);
    let handle = limit.handle();
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let rx = rx.clone();
                async move {
                    let rx = rx.lock().await.take().expect("one stream");
                    let stream = futures_stream(rx);
                    Body::new(StreamBody::new(stream))
                }
            }),
        )
        .layer(limit);
    let server = TestServer::start(app).await;
    let client = Client::new();

    let response = client
        .send_streaming(
            http::Request::get(server.url("/stream"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part one"))))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "part one");
    assert_eq!(
        handle.count(),
        1,
        "headers and a chunk are out, but the body is still open"
    );

    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part two"))))
        .await
        .unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "part two");
    wait_for(&handle, 0, false).await;
    server.shutdown().await;
}

/// A `Stream` over an mpsc receiver, without pulling in a futures crate.
fn futures_stream<T>(rx: mpsc::Receiver<T>) -> ReceiverStream<T> {
    ReceiverStream(rx)
}

struct ReceiverStream<T>(mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_shared_by_every_route_and_connection() {
    // axum#2582: tower's ConcurrencyLimitLayer under `route_layer` gets a fresh semaphore per
    // route and so limits nothing across them. Here one limiter covers both routes.
    let (limit, gate) = (limiter(4, 3, 1), Gate::new());
    let handle = limit.handle();
    let app = Router::new()
        .route("/held", get(held))
        .route("/other", get(|| async { "other" }))
        .with_state(gate.clone())
        .route_layer(limit);
    let server = TestServer::start(app).await;

    // Each held request from its own client, so each is on its own connection.
    let held: Vec<_> = (0..3)
        .map(|_| spawn_get(&Client::new(), server.url("/held")))
        .collect();
    wait_for(&handle, 3, true).await;
    let other = Client::new().get(&server.url("/other")).await;
    assert_eq!(other.status, 503, "the limit spans routes and connections");

    gate.open(3);
    for request in held {
        assert_eq!(request.await.unwrap().status, 200);
    }
    wait_for(&handle, 0, false).await;
    assert_eq!(Client::new().get(&server.url("/other")).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_only_serves_everything_and_publishes_overload() {
    let overload = OverloadState::new();
    let limit = ConcurrencyLimitLayer::builder()
        .max_in_flight(4)
        .high_water(Watermark::count(2))
        .low_water(Watermark::count(1))
        .mode(EnforcementMode::ObserveOnly)
        .overload_state(overload.clone())
        .build()
        .unwrap();
    let handle = limit.handle();
    let gate = Gate::new();
    let server = TestServer::start(app(limit, gate.clone())).await;
    let client = Client::new();

    let held: Vec<_> = (0..6)
        .map(|_| spawn_get(&client, server.url("/held")))
        .collect();
    wait_for(&handle, 6, true).await;
    assert!(
        overload.is_overloaded(),
        "shedding is published even when not enforced"
    );
    assert_eq!(client.get(&server.url("/fast")).await.status, 200);

    gate.open(6);
    for request in held {
        assert_eq!(request.await.unwrap().status, 200, "nothing is refused");
    }
    wait_for(&handle, 0, false).await;
    assert!(!overload.is_overloaded());
    server.shutdown().await;
}
