//! The layer on a paused clock against a scripted upstream: schedule, jitter, deadline,
//! `Retry-After`, idempotency, bodies, timeouts, budget, hedging, observe-only, metrics.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use common::{Log, error, read, status, upstream};
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use metrics_util::debugging::DebuggingRecorder;
use palisade_retry::{BudgetConfig, ReplayBody, RetryBuilder, RetryError, RetryLayer};
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

type CallResult = Result<Response<()>, RetryError<&'static str>>;

fn get(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

/// A budget that never runs out, so tests of the schedule see only the schedule.
fn unlimited() -> BudgetConfig {
    let mut budget = BudgetConfig::default();
    budget.ratio = 10.0;
    budget.min_per_second = 1000.0;
    budget
}

fn builder() -> RetryBuilder {
    RetryLayer::builder().budget_config(unlimited())
}

async fn send_get(
    layer: &RetryLayer,
    log: &Log,
    script: impl Fn(usize) -> common::Reply + Send + Sync + 'static,
) -> CallResult {
    layer
        .layer(upstream::<Empty<Bytes>>(log, script))
        .oneshot(get("http://upstream/x"))
        .await
}

#[tokio::test(start_paused = true)]
async fn the_schedule_follows_the_full_jitter_ceilings() {
    // The largest draw sleeps the whole ceiling: 100, 200, 400 ms.
    let layer = builder().max_attempts(4).random(|| 1.0).build().unwrap();
    let log = Log::new();
    let response = send_get(&layer, &log, |_| status(503)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(log.times_ms(), [0, 100, 300, 700]);

    // Half the ceiling with a draw of 0.5; the cap holds from the third retry on.
    let layer = builder()
        .max_attempts(5)
        .deadline(Duration::from_secs(10))
        .random(|| 0.5)
        .build()
        .unwrap();
    let log = Log::new();
    send_get(&layer, &log, |_| status(503)).await.unwrap();
    assert_eq!(log.times_ms(), [0, 50, 150, 350, 550]);
}

#[tokio::test(start_paused = true)]
async fn jittered_sleeps_stay_below_their_ceilings_and_spread() {
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(7)));
    let layer = builder()
        .max_attempts(3)
        .random(move || rng.lock().unwrap().f64())
        .build()
        .unwrap();
    let mut gaps = [Vec::new(), Vec::new()];
    for _ in 0..200 {
        let log = Log::new();
        send_get(&layer, &log, |_| status(502)).await.unwrap();
        let calls = log.calls();
        assert_eq!(calls.len(), 3);
        for retry in 0..2 {
            gaps[retry].push(calls[retry + 1].at.checked_sub(calls[retry].at).unwrap());
        }
    }
    for (retry, ceiling) in [(0, 100 * MS), (1, 200 * MS)] {
        let gaps = &gaps[retry];
        // Timers wake on whole milliseconds, rounded up.
        assert!(
            gaps.iter().all(|g| *g <= ceiling),
            "retry {retry}: {gaps:?}"
        );
        assert!(
            gaps.iter().any(|g| *g < ceiling / 10),
            "retry {retry} never short"
        );
        assert!(
            gaps.iter().any(|g| *g > ceiling * 9 / 10),
            "retry {retry} never long"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_past_the_deadline() {
    let layer = builder()
        .max_attempts(10)
        .base_delay(400 * MS)
        .max_delay(400 * MS)
        .deadline(Duration::from_secs(1))
        .random(|| 1.0)
        .build()
        .unwrap();
    let log = Log::new();
    let response = send_get(&layer, &log, |_| status(503)).await.unwrap();
    assert_eq!(response.status(), 503);
    // 0, 400, 800; a retry at 1200 would be past the deadline, so the 503 is returned at 800.
    assert_eq!(log.times_ms(), [0, 400, 800]);
    assert_eq!(log.elapsed(), 800 * MS);

    // Slow attempts use the deadline up too.
    let log = Log::new();
    send_get(&layer, &log, |_| status(503).after(300 * MS))
        .await
        .unwrap();
    assert_eq!(
        log.times_ms(),
        [0, 700],
        "0-300, sleep 400, 700-1000; 1400 is too late"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_honoured() {
    let layer = builder()
        .deadline(Duration::from_secs(5))
        .random(|| 0.5)
        .build()
        .unwrap();
    let log = Log::new();
    let response = send_get(&layer, &log, |n| {
        if n == 0 {
            status(503).retry_after("1")
        } else {
            status(200)
        }
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        log.times_ms(),
        [0, 1000],
        "the wait asked for, not the 50 ms backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let layer = builder()
        .deadline(Duration::from_secs(10))
        .max_retry_after(Duration::from_secs(5))
        .random(|| 0.0)
        .build()
        .unwrap();
    let log = Log::new();
    // HTTP-dates have whole seconds: "3 s from now" is 2 to 3 s away.
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let response = send_get(&layer, &log, move |n| {
        if n == 0 {
            status(429).retry_after(date.clone())
        } else {
            status(200)
        }
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let gap = log.calls()[1].at;
    assert!(gap > 1900 * MS && gap <= 3000 * MS, "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_the_past_means_the_backoff() {
    let layer = builder().random(|| 0.5).build().unwrap();
    let log = Log::new();
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
    send_get(&layer, &log, move |n| {
        if n == 0 {
            status(503).retry_after(past.clone())
        } else {
            status(200)
        }
    })
    .await
    .unwrap();
    assert_eq!(log.times_ms(), [0, 50]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_too_far_returns_the_response_at_once() {
    let layer = builder()
        .max_retry_after(Duration::from_secs(10))
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    for value in [
        "86400".to_owned(),
        "99999999999999999999".to_owned(),
        "Fri, 31 Dec 9999 23:59:59 GMT".to_owned(),
        // Under max_retry_after, but past the deadline.
        "3".to_owned(),
    ] {
        let log = Log::new();
        let v = value.clone();
        let response = send_get(&layer, &log, move |_| status(503).retry_after(v.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "{value}");
        assert_eq!(log.count(), 1, "{value}");
        assert_eq!(log.elapsed(), Duration::ZERO, "{value}: no waiting");
    }
    // Over max_retry_after (1 s by default) but within the deadline: not retried either.
    let layer = builder().deadline(Duration::from_secs(30)).build().unwrap();
    let log = Log::new();
    send_get(&layer, &log, |_| status(503).retry_after("2"))
        .await
        .unwrap();
    assert_eq!(log.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_listed_statuses_and_errors_are_retried() {
    let layer = builder().build().unwrap();
    for (code, calls) in [
        (200, 1),
        (304, 1),
        (400, 1),
        (403, 1),
        (404, 1),
        (416, 1),
        (500, 1),
        (501, 1),
        (429, 3),
        (502, 3),
        (503, 3),
        (504, 3),
    ] {
        let log = Log::new();
        let response = send_get(&layer, &log, move |_| status(code)).await.unwrap();
        assert_eq!(response.status(), code);
        assert_eq!(log.count(), calls, "{code}");
    }
    // A configured list replaces the default one.
    let layer = builder().retry_statuses([500, 409]).build().unwrap();
    for (code, calls) in [(500, 3), (409, 3), (503, 1)] {
        let log = Log::new();
        send_get(&layer, &log, move |_| status(code)).await.unwrap();
        assert_eq!(log.count(), calls, "{code}");
    }
    // Errors: every one by default, none with a classifier that refuses them.
    let log = Log::new();
    let err = send_get(&layer, &log, |_| error("connection refused"))
        .await
        .unwrap_err();
    assert!(matches!(err, RetryError::Inner("connection refused")));
    assert_eq!(log.count(), 3);
    let layer = builder()
        .classify_errors(|e: &&str| *e != "certificate rejected")
        .build()
        .unwrap();
    let log = Log::new();
    let client = layer.layer(upstream::<Empty<Bytes>>(&log, |_| {
        error("certificate rejected")
    }));
    client.oneshot(get("http://upstream/")).await.unwrap_err();
    assert_eq!(log.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_idempotent_requests_are_retried() {
    let layer = builder().build().unwrap();
    let cases = [
        ("GET", None, 3),
        ("HEAD", None, 3),
        ("PUT", None, 3),
        ("DELETE", None, 3),
        ("OPTIONS", None, 3),
        ("POST", None, 1),
        ("PATCH", None, 1),
        ("POST", Some("order-7"), 3),
        ("PATCH", Some("order-8"), 3),
    ];
    for (method, key, calls) in cases {
        let log = Log::new();
        let client = layer.layer(upstream::<Full<Bytes>>(&log, |_| status(503)));
        let mut request = Request::builder()
            .method(method)
            .uri("http://upstream/orders");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))
            .unwrap();
        let response = client.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 503);
        let log_calls = log.calls();
        assert_eq!(log_calls.len(), calls, "{method} {key:?}");
        assert!(
            log_calls
                .iter()
                .all(|c| c.body == "{\"qty\":1}" && c.method == method),
            "every attempt carries the same request"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_replay_limit_are_sent_once() {
    let layer = builder().max_replay_body(8).build().unwrap();
    for (body, calls) in [(&b"12345678"[..], 3), (&b"123456789"[..], 1)] {
        let log = Log::new();
        let client = layer.layer(upstream::<Full<Bytes>>(&log, |_| status(503)));
        let request = Request::put("http://upstream/blob")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        client.oneshot(request).await.unwrap();
        assert_eq!(log.count(), calls, "{} bytes", body.len());
        assert!(
            log.calls().iter().all(|c| c.body == body),
            "whole body every time"
        );
    }
    // A streaming body without a size hint, found too large while being read.
    let log = Log::new();
    let client = layer.layer(upstream::<Chunks>(&log, |_| status(503)));
    let chunks = futures_chunks(&[b"12345", b"67890", b"abc"]);
    let request = Request::put("http://upstream/blob").body(chunks).unwrap();
    client.oneshot(request).await.unwrap();
    assert_eq!(log.count(), 1);
    assert_eq!(log.calls()[0].body, "1234567890abc");
}

type Chunks = http_body_util::StreamBody<
    tokio_stream_lite::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::io::Error>>>,
>;

fn futures_chunks(chunks: &[&'static [u8]]) -> Chunks {
    let frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c))))
        .collect();
    http_body_util::StreamBody::new(tokio_stream_lite::Iter(frames.into_iter()))
}

/// A minimal `Stream` over an iterator (no size hint reaches the body).
mod tokio_stream_lite {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    pub(crate) struct Iter<I>(pub(crate) I);

    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
            Poll::Ready(self.0.next())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_and_is_retried() {
    let layer = builder()
        .attempt_timeout(100 * MS)
        .random(|| 0.0)
        .build()
        .unwrap();
    let log = Log::new();
    let response = send_get(&layer, &log, |n| {
        if n == 0 {
            status(200).after(Duration::from_secs(10))
        } else {
            status(200)
        }
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(log.times_ms(), [0, 100]);
    assert_eq!(log.cancelled(), 1, "the timed-out attempt was dropped");

    let log = Log::new();
    let err = send_get(&layer, &log, |_| status(200).after(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(log.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_returns_the_failure_at_once() {
    let mut budget = BudgetConfig::default();
    budget.ratio = 0.5;
    budget.min_per_second = 0.0;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        RetryLayer::builder()
            .name("budgeted")
            .budget_config(budget)
            .build()
            .unwrap()
    });
    let log = Log::new();
    // Two clones share one budget: the first call earns 0.5 retries (none), the second 0.5 more.
    let a = layer.layer(upstream::<Empty<Bytes>>(&log, |_| status(503)));
    let b = a.clone();
    a.oneshot(get("http://upstream/")).await.unwrap();
    assert_eq!(log.count(), 1, "half a retry is not a retry");
    assert_eq!(read(&snapshotter).outcome("budget_exhausted"), Some(1));
    b.oneshot(get("http://upstream/")).await.unwrap();
    assert_eq!(
        log.count(),
        3,
        "the second call's deposit completes one retry"
    );
    let reading = read(&snapshotter);
    assert_eq!(reading.outcome("exhausted"), Some(0));
    assert_eq!(reading.outcome("budget_exhausted"), Some(1));
    assert_eq!(reading.tokens, Some(0.0));
    assert!(layer.budget().balance(None).abs() < 1e-9);
}

/// One retry in the budget, then calls whose first attempt fails and whose retry succeeds:
/// `(attempts the upstream saw, the budget's balance after the calls)`.
async fn transient_failures_on_one_retry(refund: bool, calls: usize) -> (usize, f64) {
    let mut budget = BudgetConfig::default();
    budget.ratio = 0.0;
    budget.min_per_second = 0.1; // one retry in the 10 s window
    budget.refund_successful_retries = refund;
    let layer = RetryLayer::builder().budget_config(budget).build().unwrap();
    let mut attempts = 0;
    for _ in 0..calls {
        let log = Log::new();
        let response = send_get(&layer, &log, |n| status(if n == 0 { 503 } else { 200 }))
            .await
            .unwrap();
        attempts += log.count();
        if log.count() == 2 {
            assert_eq!(response.status(), 200, "the retry succeeded");
        }
    }
    (attempts, layer.budget().balance(None))
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_gives_its_retry_back() {
    let (attempts, balance) = transient_failures_on_one_retry(true, 5).await;
    assert_eq!(attempts, 10, "every call retried on the one refunded retry");
    assert!((balance - 1.0).abs() < 1e-9, "balance {balance}");

    let (attempts, balance) = transient_failures_on_one_retry(false, 5).await;
    assert_eq!(attempts, 6, "without refunds only the first call retries");
    assert!(balance.abs() < 1e-9, "balance {balance}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_fails_is_not_refunded() {
    let mut budget = BudgetConfig::default();
    budget.ratio = 0.0;
    budget.min_per_second = 0.1;
    let layer = RetryLayer::builder().budget_config(budget).build().unwrap();
    let log = Log::new();
    send_get(&layer, &log, |_| status(503)).await.unwrap();
    assert_eq!(log.count(), 2, "one retry, then the budget is spent");
    let log = Log::new();
    send_get(&layer, &log, |n| status(if n == 0 { 503 } else { 200 }))
        .await
        .unwrap();
    assert_eq!(log.count(), 1, "the failed retry was not given back");
}

#[tokio::test(start_paused = true)]
async fn outcomes_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || builder().name("api").build().unwrap());
    send_get(&layer, &Log::new(), |_| status(200))
        .await
        .unwrap();
    send_get(&layer, &Log::new(), |n| {
        status(if n == 0 { 503 } else { 200 })
    })
    .await
    .unwrap();
    send_get(&layer, &Log::new(), |_| status(503))
        .await
        .unwrap();
    send_get(&layer, &Log::new(), |_| status(404))
        .await
        .unwrap();
    let post = Request::post("http://upstream/")
        .body(Empty::new())
        .unwrap();
    let log = Log::new();
    layer
        .layer(upstream::<Empty<Bytes>>(&log, |_| status(503)))
        .oneshot(post)
        .await
        .unwrap();
    let reading = read(&snapshotter);
    assert_eq!(reading.outcome("first_try_ok"), Some(1));
    assert_eq!(reading.outcome("retry_ok"), Some(1));
    assert_eq!(reading.outcome("exhausted"), Some(1));
    assert_eq!(
        reading.outcome("not_retryable"),
        Some(2),
        "the 404 and the POST"
    );
    assert_eq!(reading.outcome("budget_exhausted"), Some(0));
    assert_eq!(
        reading.outcome("retryable/observe_only"),
        None,
        "no observe-only series"
    );
    assert!(reading.tokens.unwrap() > 100.0);
}

#[tokio::test(start_paused = true)]
async fn observe_only_counts_but_never_retries() {
    let mut budget = BudgetConfig::default();
    budget.ratio = 0.5;
    budget.min_per_second = 0.0;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        RetryLayer::builder()
            .observe_only()
            .hedge_after(10 * MS)
            .budget_config(budget)
            .build()
            .unwrap()
    });
    let log = Log::new();
    // Half a retry earned: the budget would have refused.
    let response = send_get(&layer, &log, |_| status(503).after(50 * MS))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(log.count(), 1, "no retry, no hedge");
    let reading = read(&snapshotter);
    assert_eq!(reading.outcome("budget_exhausted/observe_only"), Some(1));
    assert_eq!(reading.outcome("retryable/observe_only"), Some(0));
    // A whole retry earned: it would have retried (and the budget is spent as if it had).
    send_get(&layer, &log, |_| status(503)).await.unwrap();
    assert_eq!(log.count(), 2);
    let reading = read(&snapshotter);
    assert_eq!(reading.outcome("retryable/observe_only"), Some(1));
    assert!(layer.budget().balance(None).abs() < 1e-9);
    assert_eq!(reading.outcome("retry_ok"), None, "no enforcing series");
    assert_eq!(reading.outcome("budget_exhausted"), None);
}

#[tokio::test(start_paused = true)]
async fn observe_only_judges_bodies_without_holding_them() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        builder().observe_only().max_replay_body(8).build().unwrap()
    });
    for (body, expected) in [
        (&b"1234"[..], "retryable/observe_only"),
        (&b"123456789"[..], "not_retryable/observe_only"),
    ] {
        let log = Log::new();
        let client = layer.layer(upstream::<Full<Bytes>>(&log, |_| status(503)));
        let request = Request::put("http://upstream/")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        client.oneshot(request).await.unwrap();
        assert_eq!(log.count(), 1);
        assert_eq!(log.calls()[0].body, body);
        let reading = read(&snapshotter);
        assert_eq!(reading.outcome(expected), Some(1), "{} bytes", body.len());
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_fires_after_the_delay_and_the_loser_is_cancelled() {
    let layer = builder().hedge_after(100 * MS).build().unwrap();
    let log = Log::new();
    let response = send_get(&layer, &log, |n| {
        if n == 0 {
            status(200).after(Duration::from_secs(1))
        } else {
            status(204).after(10 * MS)
        }
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 204, "the hedge answered first");
    assert_eq!(log.times_ms(), [0, 100]);
    assert_eq!(log.elapsed(), 110 * MS);
    assert_eq!(log.cancelled(), 1, "the slow first attempt was dropped");

    // A fast first answer: no hedge at all.
    let log = Log::new();
    send_get(&layer, &log, |_| status(200).after(99 * MS))
        .await
        .unwrap();
    assert_eq!(log.count(), 1);

    // The first attempt wins the race: the hedge is cancelled.
    let log = Log::new();
    let response = send_get(&layer, &log, |n| {
        status(if n == 0 { 200 } else { 204 }).after(if n == 0 { 150 * MS } else { 500 * MS })
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(log.cancelled(), 1);
    assert_eq!(log.elapsed(), 150 * MS);

    // A retryable failure of one waits for the other.
    let log = Log::new();
    let response = send_get(&layer, &log, |n| {
        status(if n == 0 { 503 } else { 200 }).after(if n == 0 { 150 * MS } else { 300 * MS })
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(log.cancelled(), 0);
}

#[tokio::test(start_paused = true)]
async fn hedges_come_out_of_the_budget_and_skip_unsafe_requests() {
    let mut budget = BudgetConfig::default();
    budget.ratio = 0.0;
    budget.min_per_second = 0.0;
    let layer = RetryLayer::builder()
        .hedge_after(100 * MS)
        .budget_config(budget)
        .build()
        .unwrap();
    let log = Log::new();
    send_get(&layer, &log, |_| status(200).after(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(log.count(), 1, "no budget, no hedge");

    let layer = builder().hedge_after(100 * MS).build().unwrap();
    let log = Log::new();
    let client = layer.layer(upstream::<Full<Bytes>>(&log, |_| {
        status(200).after(Duration::from_secs(1))
    }));
    let post = Request::post("http://upstream/")
        .body(Full::default())
        .unwrap();
    client.oneshot(post).await.unwrap();
    assert_eq!(log.count(), 1, "a POST is never hedged");
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_breaker_stops_the_retries_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use palisade_circuit_breaker::{BreakerError, CircuitBreakerConfig, CircuitBreakerLayer};

    let breaker = CircuitBreakerLayer::from_config(CircuitBreakerConfig::default()).unwrap();
    let log = Log::new();
    // 5xx are failures for the breaker: it opens after a few of them.
    let behind_breaker = breaker
        .client()
        .layer(upstream::<Empty<Bytes>>(&log, |_| status(503)));
    // Count the attempts the retry layer makes (an open breaker refuses them itself).
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let through_breaker = tower::service_fn(move |request: Request<ReplayBody<Empty<Bytes>>>| {
        counter.fetch_add(1, SeqCst);
        behind_breaker.clone().oneshot(request)
    });
    let mut client = builder()
        .classify_errors(|e: &BreakerError<&'static str>| !e.is_rejected())
        .build()
        .unwrap()
        .layer(through_breaker);

    let response = client
        .ready()
        .await
        .unwrap()
        .call(get("http://upstream/"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(attempts.load(SeqCst), 3, "closed: retried");

    let mut opened = false;
    for _ in 0..20 {
        let result = client
            .ready()
            .await
            .unwrap()
            .call(get("http://upstream/"))
            .await;
        if result.is_err() {
            opened = true;
            break;
        }
    }
    assert!(opened, "the breaker opened");
    let (before_attempts, before_upstream) = (attempts.load(SeqCst), log.count());
    let err = client
        .ready()
        .await
        .unwrap()
        .call(get("http://upstream/"))
        .await
        .unwrap_err();
    assert!(err.inner().is_some_and(BreakerError::is_rejected));
    assert_eq!(
        attempts.load(SeqCst),
        before_attempts + 1,
        "open: one attempt, no retry"
    );
    assert_eq!(log.count(), before_upstream, "the upstream saw nothing");
}

#[tokio::test(start_paused = true)]
async fn per_host_budgets_keep_hosts_apart() {
    let mut budget = BudgetConfig::default();
    budget.ratio = 1.0;
    budget.min_per_second = 0.0;
    budget.scope = palisade_retry::BudgetScope::PerHost;
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .budget_config(budget)
        .build()
        .unwrap();
    let log = Log::new();
    let client = layer.layer(upstream::<Empty<Bytes>>(&log, |_| status(503)));
    // Each call to a earns one retry and spends it.
    for _ in 0..3 {
        client
            .clone()
            .oneshot(get("http://a.internal/"))
            .await
            .unwrap();
    }
    assert_eq!(log.count(), 6);
    assert_eq!(layer.budget().hosts(), 1);
    client
        .clone()
        .oneshot(get("http://b.internal:8080/"))
        .await
        .unwrap();
    assert_eq!(layer.budget().hosts(), 2);
    assert_eq!(log.count(), 8);
}
