//! The timeout's behaviour on a paused clock: who is answered, when, and what is counted.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use metrics_util::{MetricKind, debugging::DebuggingRecorder};
use palisade_core::RejectionReason;
use palisade_timeout::{TimeoutConfig, TimeoutLayer, metrics::EXPIRED};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A handler that answers `ok` after `wait` (at once for zero, without ever waiting).
fn handler(
    wait: Duration,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_: Request<Body>| async move {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    })
}

fn request() -> Request<Body> {
    Request::get("/").body(Body::empty()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_fast_request_is_served_untouched() {
    let svc = TimeoutLayer::new(TIMEOUT)
        .unwrap()
        .layer(handler(Duration::ZERO));
    let started = Instant::now();
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::ZERO);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
}

#[tokio::test(start_paused = true)]
async fn a_request_that_waits_and_finishes_in_time_is_served() {
    let svc = TimeoutLayer::new(TIMEOUT)
        .unwrap()
        .layer(handler(Duration::from_secs(9)));
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_is_answered_503_at_the_deadline_with_a_problem_document() {
    let svc = TimeoutLayer::new(TIMEOUT)
        .unwrap()
        .layer(handler(Duration::from_secs(60)));
    let started = Instant::now();
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response
            .extensions()
            .get::<RejectionReason>()
            .map(RejectionReason::as_str),
        Some("timeout")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 503);
    assert_eq!(problem["reason"], "timeout");
}

#[tokio::test(start_paused = true)]
async fn the_status_is_configurable() {
    let svc = TimeoutLayer::builder()
        .timeout(TIMEOUT)
        .status(504)
        .build()
        .unwrap()
        .layer(handler(Duration::from_secs(60)));
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

/// tower-http's timeout polls its timer first and answers a handler that completes at the very
/// deadline with its timeout status; here the finished work is sent.
#[tokio::test(start_paused = true)]
async fn a_response_ready_at_the_deadline_wins() {
    let svc = TimeoutLayer::new(TIMEOUT).unwrap().layer(handler(TIMEOUT));
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A slow request called, then first polled `delay` later: its status and how long after that
/// first poll it was answered.
async fn first_polled_after(delay: Duration) -> (StatusCode, Duration) {
    let mut svc = TimeoutLayer::new(TIMEOUT)
        .unwrap()
        .layer(handler(Duration::from_secs(60)));
    let future = svc.ready().await.unwrap().call(request());
    tokio::time::advance(delay).await;
    let first_poll = Instant::now();
    let response = future.await.unwrap();
    (response.status(), first_poll.elapsed())
}

/// The timer is armed at the first wait, but for the deadline of `call`.
#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_call_not_from_the_first_wait() {
    let answered = first_polled_after(Duration::from_secs(8)).await;
    assert_eq!(
        answered,
        (StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(2))
    );
}

/// Dropping the handler's future is what cancels its work: a timed-out handler must not run on.
#[tokio::test(start_paused = true)]
async fn the_handler_of_a_timed_out_request_is_dropped() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let svc = TimeoutLayer::new(TIMEOUT)
        .unwrap()
        .layer(service_fn(move |_: Request<Body>| {
            let guard = SetOnDrop(Arc::clone(&flag));
            async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(guard);
                Ok::<_, Infallible>(Response::new(Body::from("late")))
            }
        }));
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn observe_only_lets_a_slow_request_finish_and_counts_it() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        TimeoutLayer::builder()
            .timeout(TIMEOUT)
            .observe_only()
            .build()
            .unwrap()
    });
    let svc = layer.layer(handler(Duration::from_secs(15)));
    let started = Instant::now();
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    let snapshot = palisade_testkit::metrics::snapshot(&snapshotter);
    let count = |mode| {
        palisade_testkit::metrics::value(&snapshot, MetricKind::Counter, EXPIRED, &[("mode", mode)])
    };
    assert_eq!(count("observe_only"), Some(1.0));
    assert_eq!(count("enforce"), None);
}

#[tokio::test(start_paused = true)]
async fn each_timed_out_request_is_counted_once_and_fast_ones_not_at_all() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || TimeoutLayer::new(TIMEOUT).unwrap());
    for wait in [0, 5, 60, 0, 60, 11] {
        let svc = layer.layer(handler(Duration::from_secs(wait)));
        svc.oneshot(request()).await.unwrap();
    }
    let snapshot = palisade_testkit::metrics::snapshot(&snapshotter);
    let expired = palisade_testkit::metrics::value(
        &snapshot,
        MetricKind::Counter,
        EXPIRED,
        &[("mode", "enforce")],
    );
    assert_eq!(expired, Some(3.0));
}

#[test]
fn bad_configurations_are_errors_not_panics() {
    assert_eq!(
        TimeoutLayer::new(Duration::ZERO).unwrap_err().key(),
        "timeout"
    );
    assert_eq!(
        TimeoutLayer::new(Duration::from_secs(86_401))
            .unwrap_err()
            .key(),
        "timeout"
    );
    let err = TimeoutLayer::builder().status(200).build().unwrap_err();
    assert_eq!(err.key(), "status");
}

#[cfg(feature = "serde")]
#[test]
fn the_configuration_reads_from_toml_in_seconds() {
    let config: TimeoutConfig =
        toml::from_str("timeout = 2.5\nstatus = 504\nmode = \"observe_only\"\n").unwrap();
    let layer = TimeoutLayer::from_config(config).unwrap();
    assert_eq!(layer.config().timeout, Duration::from_millis(2500));
    assert_eq!(layer.config().status, 504);
    assert!(toml::from_str::<TimeoutConfig>("timeuot = 1\n").is_err());
    assert_eq!(
        toml::from_str::<TimeoutConfig>("").unwrap(),
        TimeoutConfig::default()
    );
}

/// A request first polled after its deadline is answered at once, not a timeout later.
#[tokio::test(start_paused = true)]
async fn a_request_first_polled_after_its_deadline_is_answered_at_once() {
    let answered = first_polled_after(Duration::from_secs(15)).await;
    assert_eq!(answered, (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO));
}

/// Without a time driver Tokio cannot make timers: the first request finds out, even one that
/// would never have needed a timer, so a misconfigured runtime does not pass its smoke test and
/// fail on its first slow request in production.
#[test]
fn a_runtime_without_timers_fails_on_the_first_request_not_the_first_slow_one() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let svc = TimeoutLayer::new(TIMEOUT)
        .unwrap()
        .layer(handler(Duration::ZERO));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(svc.oneshot(request()))
    }));
    let panic = outcome.expect_err("a fast request on a runtime without timers must panic");
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(message.contains("timers are disabled"), "{message}");
}
