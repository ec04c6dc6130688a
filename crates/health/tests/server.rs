//! The probes on a real server with a real client: answered promptly while the application's
//! routes are saturated and shedding (the real concurrency limiter inside the health layer,
//! publishing into the overload state readiness reads), and the drain sequence on a SIGTERM-like
//! signal: readiness fails first, in-flight requests complete, new connections are refused after
//! the propagation delay.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, routing::get};
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, LimiterHandle, Watermark};
use palisade_core::OverloadState;
use palisade_health::{Drain, DrainConfig, DrainOutcome, DrainPhase, HealthLayer};
use palisade_testkit::{Client, TestResponse, TestServer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, oneshot},
    time::Instant,
};

/// `/held` announces itself on `entered`, then waits until the test opens the gate.
#[derive(Clone)]
struct Gate {
    permits: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
}

impl Gate {
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (entered, rx) = mpsc::unbounded_channel();
        (
            Self {
                permits: Arc::new(Semaphore::new(0)),
                entered,
            },
            rx,
        )
    }
    fn open(&self, n: usize) {
        self.permits.add_permits(n);
    }
}

async fn held(State(gate): State<Gate>) -> &'static str {
    let _ = gate.entered.send(());
    gate.permits.acquire().await.expect("gate open").forget();
    "released"
}

fn routes(gate: Gate) -> Router {
    Router::new()
        .route("/held", get(held))
        .route("/fast", get(|| async { "fast" }))
        .with_state(gate)
}

fn spawn_get(client: &Client, url: String) -> tokio::task::JoinHandle<TestResponse> {
    let client = client.clone();
    tokio::spawn(async move { client.get(&url).await })
}

/// A probe answers at once (well within a kubelet's default 1 s timeout when the machine is
/// not also running a test suite); one queued behind held requests would never answer, so the
/// bound is generous for a busy test machine.
async fn probe(client: &Client, url: String) -> TestResponse {
    tokio::time::timeout(Duration::from_secs(5), client.get(&url))
        .await
        .expect("the probe answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_the_app_is_saturated_and_shedding() {
    let overload = OverloadState::new();
    let limit = ConcurrencyLimitLayer::builder()
        .max_in_flight(3)
        .high_water(Watermark::count(2))
        .low_water(Watermark::count(1))
        .overload_state(overload.clone())
        .build()
        .unwrap();
    let limiter: LimiterHandle = limit.handle();
    let health = HealthLayer::builder()
        .overload_state(overload.clone())
        .include_details(true)
        .build()
        .unwrap();
    let (gate, mut entered) = Gate::new();
    // Limiter inside, probes outside: the order of the preset stack.
    let app = routes(gate.clone()).layer(limit).layer(health.clone());
    health.handle().mark_started();
    let server = TestServer::start(app).await;
    let client = Client::new();

    assert_eq!(
        probe(&client, server.url("/health/ready")).await.status,
        200
    );

    // Saturate: two held requests reach the high-water mark and the limiter starts shedding.
    let held: Vec<_> = (0..2)
        .map(|_| spawn_get(&client, server.url("/held")))
        .collect();
    for _ in 0..2 {
        entered.recv().await.expect("handler entered");
    }
    assert!(limiter.is_shedding());
    let shed = client.get(&server.url("/fast")).await;
    assert_eq!(shed.status, 503, "the application's routes are shed");
    assert_eq!(
        shed.header("content-type"),
        Some("application/problem+json")
    );

    // Every probe still answers at once, many at a time; readiness says overloaded.
    let probes: Vec<_> = (0..30)
        .map(|i| {
            let path = ["/health/live", "/health/ready", "/health/startup"][i % 3];
            let client = client.clone();
            let url = server.url(path);
            tokio::spawn(async move { (path, probe(&client, url).await) })
        })
        .collect();
    for p in probes {
        let (path, response) = p.await.unwrap();
        let expected = if path == "/health/ready" { 503 } else { 200 };
        assert_eq!(response.status, expected, "{path}: {}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("application/health+json")
        );
    }
    let ready = probe(&client, server.url("/health/ready")).await.json();
    assert_eq!(ready["checks"]["overload"][0]["status"], "fail");
    assert_eq!(
        ready["checks"]["overload"][0]["output"],
        "overloaded: global"
    );
    assert_eq!(limiter.count(), 2, "probes took no permits");

    // Release: the held requests finish (their permits end with their bodies), the limiter
    // falls below low water, and readiness recovers.
    gate.open(2);
    for h in held {
        let response = h.await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "released");
    }
    assert!(!limiter.is_shedding());
    let ready = probe(&client, server.url("/health/ready")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(client.get(&server.url("/fast")).await.status, 200);
    server.shutdown().await;
}

/// A server run the way `main` runs it: `axum::serve` with the drain's signal, under
/// `Drain::run`.
struct Running {
    addr: SocketAddr,
    trigger: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<DrainOutcome>>,
}

async fn run_with_drain(app: Router, drain: &Drain) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, fired) = oneshot::channel::<()>();
    let signal = drain.signal(async move {
        let _ = fired.await;
    });
    let drain = drain.clone();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(signal);
        drain.run(server).await
    });
    Running {
        addr,
        trigger,
        task,
    }
}

/// Connects until the listener is gone: axum drops it right after the signal resolves, on its
/// own task. Each attempt is a real connection, not a timer.
async fn wait_until_refused(addr: SocketAddr) {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return,
            // The listener closed while this handshake was queued on it.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("unexpected connect error: {err}"),
            Ok(stream) => {
                drop(stream);
            }
        }
        assert!(
            Instant::now() < give_up,
            "still accepting 5 s after the signal"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_first_then_refuses_connections_and_drains() {
    let health = HealthLayer::builder()
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    // Long enough for the probes and the request below on a busy machine: all of them must
    // happen while the drain is still propagating.
    let delay = Duration::from_secs(5);
    let drain = Drain::new(
        health.handle(),
        DrainConfig {
            propagation_delay: delay,
            deadline: Duration::from_secs(10),
        },
    )
    .unwrap();
    let (gate, mut entered) = Gate::new();
    let app = routes(gate.clone()).layer(health.clone());
    let running = run_with_drain(app, &drain).await;
    let url = |path: &str| format!("http://{}{path}", running.addr);
    health.handle().mark_started();
    let client = Client::new();
    assert_eq!(probe(&client, url("/health/ready")).await.status, 200);

    // A request in flight when the signal comes.
    let in_flight = spawn_get(&client, url("/held"));
    entered.recv().await.unwrap();

    let signalled = Instant::now();
    running.trigger.send(()).unwrap();
    drain.reached(DrainPhase::Propagating).await;
    // 1. Readiness fails at once; the server still accepts and serves, closing keep-alive.
    let ready = probe(&client, url("/health/ready")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(probe(&client, url("/health/live")).await.status, 200);
    let fast = client.get(&url("/fast")).await;
    assert_eq!(fast.status, 200);
    assert_eq!(fast.header("connection"), Some("close"));
    assert_eq!(drain.phase(), DrainPhase::Propagating);

    // 2. After the propagation delay, new connections are refused...
    drain.reached(DrainPhase::Draining).await;
    assert!(signalled.elapsed() >= delay);
    wait_until_refused(running.addr).await;
    // ...while the request in flight is still being served,
    assert!(!in_flight.is_finished());
    assert!(!running.task.is_finished());

    // 3. and completes; then the server is done.
    gate.open(1);
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "released");
    let outcome = tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, DrainOutcome::Drained);
    assert_eq!(drain.phase(), DrainPhase::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_ends_a_drain_that_would_wait_forever() {
    let health = HealthLayer::builder()
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    let deadline = Duration::from_millis(300);
    let drain = Drain::new(
        health.handle(),
        DrainConfig {
            propagation_delay: Duration::ZERO,
            deadline,
        },
    )
    .unwrap();
    let (gate, mut entered) = Gate::new();
    let running = run_with_drain(routes(gate.clone()).layer(health), &drain).await;
    let client = Client::new();
    let stuck = spawn_get(&client, format!("http://{}/held", running.addr));
    entered.recv().await.unwrap();

    let signalled = Instant::now();
    running.trigger.send(()).unwrap();
    let outcome = running.task.await.unwrap().unwrap();
    assert_eq!(outcome, DrainOutcome::DeadlineExceeded);
    // No propagation delay: the deadline runs from the signal.
    assert!(signalled.elapsed() >= deadline);
    assert_eq!(drain.phase(), DrainPhase::Stopped);
    // In `main`, returning now ends the runtime and cuts the request; here we let it go.
    gate.open(1);
    let _ = stuck.await;
}
