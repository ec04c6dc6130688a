//! Two route groups with separate bulkheads on a real server with a real client: flooding `/api`
//! with slow requests fills its slots and queue and gets 503s naming the bulkhead, while `/admin`
//! keeps answering at its normal latency; queued requests are served once slots free up.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, extract::State, routing::get};
use palisade_bulkhead::{BulkheadConfig, BulkheadLayer, BulkheadPool, BulkheadRegistry};
use palisade_testkit::{Client, TestResponse, TestServer};
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};

/// Requests to `/api/slow` report that they started, then wait until the test opens the gate.
#[derive(Clone)]
struct Slow {
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
}

async fn slow(State(slow): State<Slow>) -> &'static str {
    let _ = slow.entered.send(());
    slow.gate.acquire().await.expect("gate open").forget();
    "released"
}

/// Yields (no sleeping) until `bulkhead` has `queued` waiters.
async fn until_queued(bulkhead: &BulkheadPool, queued: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bulkhead.queued() != queued {
        assert!(
            Instant::now() < deadline,
            "{bulkhead:?}: wanted {queued} queued"
        );
        tokio::task::yield_now().await;
    }
}

fn app(api: BulkheadLayer, admin: BulkheadLayer, state: Slow) -> Router {
    Router::new()
        .nest(
            "/api",
            Router::new()
                .route("/slow", get(slow))
                .route("/fast", get(|| async { "fast" }))
                .with_state(state)
                .route_layer(api),
        )
        .nest(
            "/admin",
            Router::new()
                .route("/status", get(|| async { "ok" }))
                .route_layer(admin),
        )
}

fn assert_rejected(response: &TestResponse) {
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    let doc = response.json();
    assert_eq!(doc["reason"], "bulkhead_queue_full");
    assert_eq!(doc["bulkhead"], "api");
    assert_eq!(doc["cause"], "queue_full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_group_rejects_while_the_other_keeps_serving() {
    let registry = BulkheadRegistry::new();
    let api = registry
        .register({
            let mut config = BulkheadConfig::named("api");
            config.max_concurrent = 4;
            config.max_queued = 2;
            config.max_wait = Duration::from_secs(30);
            config
        })
        .unwrap();
    let admin = registry
        .register({
            let mut config = BulkheadConfig::named("admin");
            config.max_concurrent = 2;
            config.max_queued = 0;
            config
        })
        .unwrap();
    let api_handle = api.bulkhead().clone();
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let state = Slow {
        gate: Arc::clone(&gate),
        entered: entered_tx,
    };
    let server = TestServer::start(app(api, admin, state)).await;
    let client = Client::new();

    // Baseline admin latency before the flood.
    let start = Instant::now();
    assert_eq!(client.get(&server.url("/admin/status")).await.text(), "ok");
    let baseline = start.elapsed();

    // Flood: 10 slow requests for 4 slots and 2 places in the queue.
    let mut flood = JoinSet::new();
    for _ in 0..10 {
        let (client, url) = (client.clone(), server.url("/api/slow"));
        flood.spawn(async move { client.get(&url).await });
    }
    for _ in 0..4 {
        entered.recv().await.expect("handler entered");
    }
    // The 4 requests beyond slots + queue are answered at once.
    for _ in 0..4 {
        let response = flood.join_next().await.unwrap().unwrap();
        assert_rejected(&response);
    }
    until_queued(&api_handle, 2).await;
    assert_eq!(api_handle.in_flight(), 4);

    // Any other /api route shares the bulkhead: refused too.
    assert_rejected(&client.get(&server.url("/api/fast")).await);

    // Meanwhile /admin, with its own bulkhead, answers at once every time.
    for _ in 0..20 {
        let start = Instant::now();
        let response = client.get(&server.url("/admin/status")).await;
        assert_eq!(
            (response.status.as_u16(), response.text().as_str()),
            (200, "ok")
        );
        assert!(
            // Queued behind the held /api requests it would never answer; the bound only
            // has to stay above what a busy machine adds.
            start.elapsed() < baseline.max(Duration::from_millis(250)) * 20,
            "admin slowed down: {:?} vs baseline {baseline:?}",
            start.elapsed()
        );
    }
    assert!(
        entered.try_recv().is_err(),
        "the queued requests still wait"
    );

    // Free the slots: the queued requests are served, then everything completes.
    gate.add_permits(6);
    let mut released = 0;
    while let Some(response) = flood.join_next().await {
        assert_eq!(response.unwrap().text(), "released");
        released += 1;
    }
    assert_eq!(released, 6, "4 running + 2 queued all served");
    // Slots are released when the bodies have ended, which the client has seen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api_handle.in_flight() != 0 {
        assert!(Instant::now() < deadline, "slots leaked: {api_handle:?}");
        tokio::task::yield_now().await;
    }
    assert_eq!(api_handle.queued(), 0);
    let fast = client.get(&server.url("/api/fast")).await;
    assert_eq!((fast.status.as_u16(), fast.text().as_str()), (200, "fast"));
    assert_eq!(registry.names(), vec!["admin".to_owned(), "api".to_owned()]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_of_separate_routers_share_a_registered_bulkhead() {
    let registry = BulkheadRegistry::new();
    registry
        .register({
            let mut config = BulkheadConfig::named("reports");
            config.max_concurrent = 1;
            config.max_queued = 0;
            config
        })
        .unwrap();
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let state = Slow {
        gate: Arc::clone(&gate),
        entered: entered_tx,
    };
    let daily = Router::new()
        .route("/daily", get(slow))
        .with_state(state)
        .route_layer(registry.get("reports").unwrap());
    let weekly = Router::new()
        .route("/weekly", get(|| async { "weekly" }))
        .route_layer(registry.get("reports").unwrap());
    let server = TestServer::start(daily.merge(weekly)).await;
    let client = Client::new();

    let held = {
        let (client, url) = (client.clone(), server.url("/daily"));
        tokio::spawn(async move { client.get(&url).await })
    };
    entered.recv().await.unwrap();
    let refused = client.get(&server.url("/weekly")).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["bulkhead"], "reports");
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().text(), "released");
    server.shutdown().await;
}
