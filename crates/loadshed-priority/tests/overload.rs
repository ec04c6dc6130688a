//! Real overload on a real server: the load shedder in front of the concurrency limiter keeps
//! critical traffic whole while sheddable traffic absorbs the shedding, and probes are never shed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, routing::get};
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, Watermark};
use palisade_core::OverloadState;
use palisade_loadshed_priority::LoadShedLayer;
use palisade_testkit::{Client, TestServer};
use tokio::sync::Semaphore;

const WORK: Duration = Duration::from_millis(5);

/// Four workers: capacity about 800 requests/s, far below what 40 eager clients ask for.
async fn work(State(pool): State<Arc<Semaphore>>) -> &'static str {
    let _slot = pool.acquire().await.expect("pool open");
    tokio::time::sleep(WORK).await;
    "done"
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    shed: AtomicU64,
    other: AtomicU64,
}

impl Tally {
    fn record(&self, status: u16) {
        match status {
            200 => &self.ok,
            503 => &self.shed,
            _ => &self.other,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// The shedder in front of the limiter, sharing one overload state. The limiter publishes
/// in-flight / 50; the shedder sheds sheddable from 25 in flight (all of it from 30) and critical
/// only from 35, which four critical clients can never push it to.
fn app() -> Router {
    let overload = OverloadState::new();
    let limit = ConcurrencyLimitLayer::builder()
        .max_in_flight(50)
        .high_water(Watermark::fraction(0.8))
        .low_water(Watermark::fraction(0.6))
        .overload_state(overload.clone())
        .build()
        .unwrap();
    let shed = LoadShedLayer::builder()
        .overload_state(overload)
        .build()
        .unwrap();
    Router::new()
        .route("/work", get(work))
        .route("/health/live", get(|| async { "alive" }))
        .with_state(Arc::new(Semaphore::new(4)))
        .layer(limit)
        .layer(shed)
}

/// 36 eager sheddable clients, until `done`.
fn sheddable_traffic(
    server: &TestServer,
    tally: &Arc<Tally>,
    done: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..36)
        .map(|_| {
            let (client, url, tally, done) = (
                Client::new(),
                server.url("/work"),
                Arc::clone(tally),
                Arc::clone(done),
            );
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let response = client
                        .get_with_header(&url, "x-priority", "sheddable")
                        .await;
                    tally.record(response.status.as_u16());
                    if response.status == 503 {
                        // A polite client backs off a little before retrying.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect()
}

/// `clients` clients sending `requests` requests each to `path` with `priority`.
fn clients(
    server: &TestServer,
    path: &str,
    priority: &'static str,
    clients: usize,
    requests: usize,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (client, url, tally) = (Client::new(), server.url(path), Arc::clone(tally));
            tokio::spawn(async move {
                for _ in 0..requests {
                    tally.record(
                        client
                            .get_with_header(&url, "x-priority", priority)
                            .await
                            .status
                            .as_u16(),
                    );
                }
            })
        })
        .collect()
}

fn counts(t: &Tally) -> (u64, u64, u64) {
    (
        t.ok.load(Ordering::Relaxed),
        t.shed.load(Ordering::Relaxed),
        t.other.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_traffic_survives_while_sheddable_traffic_is_shed() {
    let server = TestServer::start(app()).await;
    let (critical, sheddable, probes) = (
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
    );
    let done = Arc::new(AtomicBool::new(false));
    let background = sheddable_traffic(&server, &sheddable, &done);
    // Probes say `sheddable` too: the health paths are critical_plus whatever the header says.
    let measured = [
        clients(&server, "/work", "critical", 4, 25, &critical),
        clients(&server, "/health/live", "sheddable", 1, 20, &probes),
    ];
    for task in measured.into_iter().flatten() {
        task.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for task in background {
        task.await.unwrap();
    }

    assert_eq!(
        counts(&critical),
        (100, 0, 0),
        "every critical request succeeded"
    );
    let (sheddable_ok, sheddable_shed, sheddable_other) = counts(&sheddable);
    assert!(
        sheddable_shed > 0,
        "the server was overloaded and shed sheddable traffic"
    );
    assert!(
        sheddable_ok > 0,
        "sheddable traffic was shed in part, not starved"
    );
    assert_eq!(sheddable_other, 0);
    assert_eq!(counts(&probes), (20, 0, 0), "probes are never shed");
    server.shutdown().await;
}
