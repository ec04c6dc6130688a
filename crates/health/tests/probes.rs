//! Every state of every probe, on a paused clock, through the tower service: lifecycle,
//! overload policies, critical and non-critical checks, TTL caches, background periods,
//! timeouts, panics, single flight, details, methods, aliases and pass-through.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use palisade_core::OverloadState;
use palisade_health::{
    Check, CheckResult, Health, HealthBuilder, HealthCheck, HealthLayer, OverloadPolicy, Probe,
    Status,
};
use serde_json::Value;
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

type App = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

fn app() -> App {
    #[allow(clippy::needless_pass_by_value)] // the signature `service_fn` needs
    fn handle(
        request: Request<()>,
    ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        let body = format!("app saw {}", request.uri().path());
        std::future::ready(Ok(Response::new(Full::new(Bytes::from(body)))))
    }
    service_fn(handle as fn(_) -> _)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(svc: &Health<App>, method: Method, path: &str, version: Version) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .version(version)
        .body(())
        .unwrap();
    let response = svc.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(svc: &Health<App>, path: &str) -> Answer {
    send(svc, Method::GET, path, Version::HTTP_11).await
}

fn builder(overload: &OverloadState) -> HealthBuilder {
    HealthLayer::builder().overload_state(overload.clone())
}

fn service(layer: &HealthLayer) -> Health<App> {
    layer.layer(app())
}

/// A check whose answer the test sets, counting its runs.
#[derive(Clone, Default)]
struct Switch {
    failing: Arc<AtomicBool>,
    runs: Arc<AtomicUsize>,
}

impl Switch {
    fn check(&self, name: &'static str) -> Check {
        let this = self.clone();
        Check::from_fn(name, move || {
            this.runs.fetch_add(1, Ordering::SeqCst);
            let failing = this.failing.load(Ordering::SeqCst);
            async move {
                if failing {
                    Err("connection refused")
                } else {
                    Ok(())
                }
            }
        })
    }
    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn startup_fails_until_marked_started() {
    let layer = builder(&OverloadState::new()).build().unwrap();
    let svc = service(&layer);
    let before = get(&svc, "/health/startup").await;
    assert_eq!(before.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(before.text(), r#"{"status":"fail"}"#);
    assert_eq!(before.headers["content-type"], "application/health+json");
    assert_eq!(before.headers["cache-control"], "no-store");
    layer.handle().mark_started();
    layer.handle().mark_started();
    let after = get(&svc, "/health/startup").await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.text(), r#"{"status":"pass"}"#);
    // Draining does not touch startup.
    layer.handle().begin_drain();
    assert_eq!(get(&svc, "/health/startup").await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn liveness_passes_whatever_readiness_says() {
    let overload = OverloadState::new();
    let dependency = Switch::default();
    dependency.set_failing(true);
    let layer = builder(&overload)
        .readiness_check(dependency.check("db").on_demand(Duration::ZERO))
        .build()
        .unwrap();
    let svc = service(&layer);
    let health = layer.handle();
    // Not started, dependency down, overloaded, draining: liveness is about the process only.
    assert_eq!(get(&svc, "/health/live").await.status, StatusCode::OK);
    let source = overload.register("concurrency").unwrap();
    source.publish(1.0, true);
    health.mark_started();
    health.begin_drain();
    let live = get(&svc, "/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.text(), r#"{"status":"pass"}"#);
    assert_eq!(dependency.runs(), 0, "liveness never runs readiness checks");
}

#[tokio::test(start_paused = true)]
async fn liveness_checks_fail_liveness_and_non_critical_ones_warn() {
    let stuck = Switch::default();
    let degraded = Switch::default();
    let layer = builder(&OverloadState::new())
        .include_details(true)
        .liveness_check(stuck.check("worker-pool").on_demand(Duration::ZERO))
        .liveness_check(
            degraded
                .check("cache")
                .on_demand(Duration::ZERO)
                .non_critical(),
        )
        .build()
        .unwrap();
    let svc = service(&layer);
    assert_eq!(get(&svc, "/health/live").await.status, StatusCode::OK);
    degraded.set_failing(true);
    let warn = get(&svc, "/health/live").await;
    assert_eq!(warn.status, StatusCode::OK);
    assert_eq!(warn.json()["status"], "warn");
    assert_eq!(warn.json()["checks"]["cache"][0]["status"], "fail");
    stuck.set_failing(true);
    let fail = get(&svc, "/health/live").await;
    assert_eq!(fail.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        fail.json()["checks"]["worker-pool"][0]["output"],
        "connection refused"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_through_every_state() {
    let overload = OverloadState::new();
    let db = Switch::default();
    let layer = builder(&overload)
        .include_details(true)
        .readiness_check(db.check("db").on_demand(Duration::ZERO))
        .build()
        .unwrap();
    let svc = service(&layer);
    let health = layer.handle();
    let ready = |a: &Answer| (a.status, a.json()["status"].as_str().unwrap().to_owned());

    // Starting: fails without running the checks.
    let starting = get(&svc, "/health/ready").await;
    assert_eq!(
        ready(&starting),
        (StatusCode::SERVICE_UNAVAILABLE, "fail".into())
    );
    assert_eq!(
        starting.json()["checks"]["lifecycle"][0]["output"],
        "starting"
    );
    assert_eq!(starting.json()["output"], "lifecycle: starting");
    assert_eq!(db.runs(), 0);

    health.mark_started();
    let up = get(&svc, "/health/ready").await;
    assert_eq!(ready(&up), (StatusCode::OK, "pass".into()));
    assert_eq!(up.json()["checks"]["db"][0]["status"], "pass");
    assert!(up.json()["checks"]["db"][0]["time"].is_string());
    assert!(up.json().get("output").is_none());
    assert_eq!(db.runs(), 1);

    // Overloaded: fails, and says why.
    let limiter = overload.register("concurrency").unwrap();
    limiter.publish(0.95, true);
    let busy = get(&svc, "/health/ready").await;
    assert_eq!(
        ready(&busy),
        (StatusCode::SERVICE_UNAVAILABLE, "fail".into())
    );
    let part = &busy.json()["checks"]["overload"][0];
    assert_eq!(part["output"], "overloaded: concurrency");
    assert_eq!(part["observedValue"], 95.0);
    assert_eq!(part["observedUnit"], "percent");
    limiter.publish(0.5, false);
    assert_eq!(
        ready(&get(&svc, "/health/ready").await),
        (StatusCode::OK, "pass".into())
    );

    // A critical check failing.
    db.set_failing(true);
    let down = get(&svc, "/health/ready").await;
    assert_eq!(
        ready(&down),
        (StatusCode::SERVICE_UNAVAILABLE, "fail".into())
    );
    assert_eq!(down.json()["output"], "db: connection refused");
    db.set_failing(false);
    assert_eq!(get(&svc, "/health/ready").await.status, StatusCode::OK);

    // Draining: fails at once, for good, and stops running checks.
    let runs = db.runs();
    health.begin_drain();
    let draining = get(&svc, "/health/ready").await;
    assert_eq!(
        ready(&draining),
        (StatusCode::SERVICE_UNAVAILABLE, "fail".into())
    );
    assert_eq!(
        draining.json()["checks"]["lifecycle"][0]["output"],
        "draining"
    );
    assert_eq!(db.runs(), runs, "no check runs while draining");
    assert_eq!(
        draining.json()["checks"]["db"][0]["status"],
        "pass",
        "the last known result is still reported"
    );
}

#[tokio::test(start_paused = true)]
async fn non_critical_readiness_checks_warn_with_200() {
    let cache = Switch::default();
    let layer = builder(&OverloadState::new())
        .readiness_check(
            cache
                .check("cache")
                .on_demand(Duration::ZERO)
                .non_critical(),
        )
        .build()
        .unwrap();
    let svc = service(&layer);
    layer.handle().mark_started();
    cache.set_failing(true);
    let answer = get(&svc, "/health/ready").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.text(),
        r#"{"status":"warn"}"#,
        "no details by default"
    );
}

#[tokio::test(start_paused = true)]
async fn overload_policies() {
    let overload = OverloadState::new();
    let source = overload.register("listener").unwrap();
    source.publish(0.9, true);
    let answer = |policy| {
        let layer = builder(&overload)
            .overload_policy(policy)
            .include_details(true)
            .build()
            .unwrap();
        layer.handle().mark_started();
        async move { get(&service(&layer), "/readyz").await }
    };
    let fail = answer(OverloadPolicy::Fail).await;
    // `/readyz` is not an alias unless enabled: the app answered.
    assert_eq!(fail.text(), "app saw /readyz");

    let probe = |policy| {
        let layer = builder(&overload)
            .overload_policy(policy)
            .include_details(true)
            .build()
            .unwrap();
        layer.handle().mark_started();
        async move { get(&service(&layer), "/health/ready").await }
    };
    let fail = probe(OverloadPolicy::Fail).await;
    assert_eq!(fail.status, StatusCode::SERVICE_UNAVAILABLE);
    // Observe-only: reported, not acted on.
    let warn = probe(OverloadPolicy::Warn).await;
    assert_eq!(warn.status, StatusCode::OK);
    assert_eq!(warn.json()["status"], "warn");
    assert_eq!(warn.json()["checks"]["overload"][0]["status"], "warn");
    let ignore = probe(OverloadPolicy::Ignore).await;
    assert_eq!(ignore.status, StatusCode::OK);
    assert_eq!(ignore.json()["status"], "pass");
    assert!(ignore.json()["checks"].get("overload").is_none());
}

#[tokio::test(start_paused = true)]
async fn paths_aliases_methods_and_pass_through() {
    let layer = builder(&OverloadState::new())
        .kubernetes_aliases(true)
        .startup_path("/_/started")
        .build()
        .unwrap();
    let svc = service(&layer);
    layer.handle().mark_started();
    assert_eq!(get(&svc, "/livez").await.text(), r#"{"status":"pass"}"#);
    assert_eq!(get(&svc, "/readyz").await.text(), r#"{"status":"pass"}"#);
    assert_eq!(get(&svc, "/_/started").await.status, StatusCode::OK);
    assert_eq!(
        get(&svc, "/health/startup").await.text(),
        "app saw /health/startup"
    );
    // Exact paths only; queries do not matter.
    assert_eq!(
        get(&svc, "/health/ready/").await.text(),
        "app saw /health/ready/"
    );
    assert_eq!(
        get(&svc, "/health/ready?verbose").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&svc, "/health/readyx").await.text(),
        "app saw /health/readyx"
    );
    assert_eq!(get(&svc, "/").await.text(), "app saw /");

    let head = send(&svc, Method::HEAD, "/health/ready", Version::HTTP_11).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-type"], "application/health+json");
    let post = send(&svc, Method::POST, "/health/live", Version::HTTP_11).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers["allow"], "GET, HEAD");
}

#[tokio::test(start_paused = true)]
async fn draining_closes_http1_connections_of_pass_through_responses() {
    let layer = builder(&OverloadState::new()).build().unwrap();
    let svc = service(&layer);
    assert!(get(&svc, "/api").await.headers.get("connection").is_none());
    layer.handle().begin_drain();
    assert_eq!(get(&svc, "/api").await.headers["connection"], "close");
    let h2 = send(&svc, Method::GET, "/api", Version::HTTP_2).await;
    assert!(
        h2.headers.get("connection").is_none(),
        "forbidden in HTTP/2"
    );
    assert!(
        get(&svc, "/health/ready")
            .await
            .headers
            .get("connection")
            .is_none(),
        "probes keep their connection"
    );

    // A response with its own `Connection` (an upgrade) keeps it.
    let upgrade = service_fn(|_: Request<()>| async {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("connection", http::HeaderValue::from_static("upgrade"));
        Ok::<_, Infallible>(response)
    });
    let upgraded = layer
        .layer(upgrade)
        .oneshot(Request::get("/ws").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(upgraded.headers()["connection"], "upgrade");

    let keep = builder(&OverloadState::new())
        .close_connections_while_draining(false)
        .build()
        .unwrap();
    keep.handle().begin_drain();
    assert!(
        get(&service(&keep), "/api")
            .await
            .headers
            .get("connection")
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn one_hundred_concurrent_probes_run_the_check_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let layer = builder(&OverloadState::new())
        .readiness_check(
            Check::from_fn("slow-db", move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    true
                }
            })
            .on_demand(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    layer.handle().mark_started();
    let svc = service(&layer);
    let start = Instant::now();
    let probes: Vec<_> = (0..100)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { get(&svc, "/health/ready").await.status })
        })
        .collect();
    for probe in probes {
        assert_eq!(probe.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "single flight");
    assert_eq!(start.elapsed(), Duration::from_millis(100));

    // Within the TTL, from the cache, without waiting.
    tokio::time::advance(Duration::from_millis(999)).await;
    let t = Instant::now();
    assert_eq!(get(&svc, "/health/ready").await.status, StatusCode::OK);
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Expired: the next probe runs it again.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(get(&svc, "/health/ready").await.status, StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_does_not_cancel_the_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let layer = builder(&OverloadState::new())
        .readiness_check(
            Check::from_fn("db", move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    true
                }
            })
            .on_demand(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    layer.handle().mark_started();
    let svc = service(&layer);
    // The client gives up after 50 ms.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), get(&svc, "/health/ready")).await;
    assert!(gave_up.is_err());
    // The run went on and its result serves the next probe.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    assert_eq!(get(&svc, "/health/ready").await.status, StatusCode::OK);
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn background_checks_run_on_their_period_and_probes_read_the_cache() {
    let db = Switch::default();
    let layer = builder(&OverloadState::new())
        .include_details(true)
        .readiness_check(db.check("db").every(Duration::from_secs(5)))
        .build()
        .unwrap();
    layer.handle().mark_started();
    let svc = service(&layer);
    // The first run starts at build time; the first probe waits for it.
    assert_eq!(get(&svc, "/health/ready").await.status, StatusCode::OK);
    assert_eq!(db.runs(), 1);
    for _ in 0..10 {
        get(&svc, "/health/ready").await;
    }
    assert_eq!(db.runs(), 1, "probes never run background checks");

    db.set_failing(true);
    tokio::time::sleep(Duration::from_millis(4_999)).await;
    assert_eq!(
        get(&svc, "/health/ready").await.status,
        StatusCode::OK,
        "cached"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Let the run at 5 s finish.
    tokio::task::yield_now().await;
    assert_eq!(db.runs(), 2);
    let failed = get(&svc, "/health/ready").await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        failed.json()["checks"]["db"][0]["output"],
        "connection refused"
    );

    tokio::time::sleep(Duration::from_millis(50_100)).await;
    assert_eq!(db.runs(), 12, "every 5 s");
}

#[tokio::test(start_paused = true)]
async fn timed_out_and_panicking_checks_fail_and_never_hang_the_probe() {
    let layer = builder(&OverloadState::new())
        .include_details(true)
        .readiness_check(
            Check::from_fn("hangs", std::future::pending::<bool>)
                .timeout(Duration::from_millis(250))
                .on_demand(Duration::ZERO),
        )
        .readiness_check(
            Check::from_fn("panics", || async {
                let v: Vec<u8> = Vec::new();
                v[3] == 0
            })
            .on_demand(Duration::ZERO),
        )
        .build()
        .unwrap();
    layer.handle().mark_started();
    let svc = service(&layer);
    let start = Instant::now();
    let answer = get(&svc, "/health/ready").await;
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(250),
        "bounded by the timeout"
    );
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let doc = answer.json();
    assert_eq!(
        doc["checks"]["hangs"][0]["output"],
        "check timed out after 250 ms"
    );
    let panicked = doc["checks"]["panics"][0]["output"].as_str().unwrap();
    assert!(
        panicked.starts_with("check panicked: index out of bounds"),
        "{panicked}"
    );
    // The probe still works afterwards.
    assert_eq!(get(&svc, "/health/live").await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn checks_of_one_probe_run_concurrently() {
    let slow = |name: &'static str| {
        Check::from_fn(name, || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            true
        })
        .on_demand(Duration::ZERO)
    };
    let layer = builder(&OverloadState::new())
        .readiness_check(slow("a"))
        .readiness_check(slow("b"))
        .readiness_check(slow("c"))
        .build()
        .unwrap();
    layer.handle().mark_started();
    let start = Instant::now();
    assert_eq!(
        get(&service(&layer), "/health/ready").await.status,
        StatusCode::OK
    );
    assert_eq!(start.elapsed(), Duration::from_millis(300), "not 900 ms");
}

struct Replication {
    lag: Duration,
}

impl HealthCheck for Replication {
    async fn check(&self) -> CheckResult {
        if self.lag > Duration::from_secs(10) {
            CheckResult::warn(format!("replication lag {} s", self.lag.as_secs()))
        } else {
            CheckResult::pass()
        }
    }
}

#[tokio::test(start_paused = true)]
async fn trait_checks_details_and_service_fields() {
    let layer = builder(&OverloadState::new())
        .include_details(true)
        .service_id("production_server")
        .version("1")
        .release_id("1.4.2")
        .description("the example")
        .readiness_check(
            Check::new(
                "replica:lag",
                Replication {
                    lag: Duration::from_secs(12),
                },
            )
            .on_demand(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    layer.handle().mark_started();
    let doc = get(&service(&layer), "/health/ready").await.json();
    assert_eq!(
        doc["status"], "warn",
        "a critical check's own warn is a warn"
    );
    assert_eq!(doc["serviceId"], "production_server");
    assert_eq!(doc["version"], "1");
    assert_eq!(doc["releaseId"], "1.4.2");
    assert_eq!(doc["description"], "the example");
    assert_eq!(
        doc["checks"]["replica:lag"][0]["output"],
        "replication lag 12 s"
    );
    assert_eq!(doc["output"], "replica:lag: replication lag 12 s");
}

#[tokio::test(start_paused = true)]
async fn reports_through_the_handle_match_the_probes() {
    let overload = OverloadState::new();
    let layer = builder(&overload).build().unwrap();
    let health = layer.handle();
    let clone = layer.clone();
    health.mark_started();
    let report = health.report(Probe::Readiness).await;
    assert_eq!(report.status(), Status::Pass);
    assert_eq!(report.probe(), Probe::Readiness);
    assert_eq!(report.check("lifecycle").unwrap().status(), Status::Pass);
    assert_eq!(
        get(&service(&clone), "/health/ready").await.status,
        StatusCode::OK,
        "clones share the state"
    );
    let draining = tokio::spawn({
        let health = health.clone();
        async move { health.draining().await }
    });
    health.begin_drain();
    draining.await.unwrap();
    let report = health.report(Probe::Readiness).await;
    assert_eq!(report.http_status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(report.summary().as_deref(), Some("lifecycle: draining"));
    assert!(format!("{health:?}").contains("draining: true"));
}

#[test]
fn a_layer_built_outside_a_runtime_starts_its_background_checks_at_the_first_probe() {
    let db = Switch::default();
    let layer = HealthLayer::builder()
        .overload_state(OverloadState::new())
        .readiness_check(db.check("db").every(Duration::from_secs(5)))
        .build()
        .unwrap();
    assert_eq!(db.runs(), 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        layer.handle().mark_started();
        let svc = service(&layer);
        assert_eq!(get(&svc, "/health/ready").await.status, StatusCode::OK);
        assert_eq!(db.runs(), 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        assert_eq!(db.runs(), 2, "the loop runs");
    });
}

#[test]
fn invalid_layers_are_refused_with_the_key() {
    let key = |b: HealthBuilder| b.build().unwrap_err().key().to_owned();
    let ok = || Check::from_fn("db", || async { true });
    assert_eq!(
        key(HealthLayer::builder()
            .readiness_check(ok())
            .liveness_check(ok())),
        "liveness.checks.db".replace("liveness", "readiness")
    );
    assert_eq!(
        key(HealthLayer::builder().liveness_check(ok().timeout(Duration::ZERO))),
        "liveness.checks.db.timeout"
    );
    assert_eq!(
        key(HealthLayer::builder().ready_path("ready")),
        "ready_path"
    );
    let layer = HealthLayer::default();
    assert!(format!("{layer:?}").contains("/health/live"));
}

#[test]
fn a_check_that_blocks_its_thread_cannot_hang_the_probe() {
    // A check doing blocking I/O by mistake: the run's timer cannot fire on its blocked worker,
    // but the probe, waiting on another worker, gives up at the deadline.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Arc::new(std::sync::Mutex::new(blocked));
    let layer = runtime.block_on(async {
        HealthLayer::builder()
            .overload_state(OverloadState::new())
            .include_details(true)
            .readiness_check(
                Check::from_fn("blocking", move || {
                    let blocked = Arc::clone(&blocked);
                    async move {
                        let _ = blocked.lock().unwrap().recv();
                        true
                    }
                })
                .timeout(Duration::from_millis(100))
                .on_demand(Duration::ZERO),
            )
            .build()
            .unwrap()
    });
    layer.handle().mark_started();
    let svc = service(&layer);
    let answer = runtime.block_on(async {
        tokio::spawn(async move { get(&svc, "/health/ready").await })
            .await
            .unwrap()
    });
    release.send(()).unwrap();
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.json()["checks"]["blocking"][0]["output"],
        "check did not finish by its deadline (blocked thread?)"
    );
    runtime.shutdown_timeout(Duration::from_secs(5));
}
