//! Each timeout is one `warn` event inside the request's span (so its request id is on the line),
//! and a flood of them writes at most ten lines a second.

use std::{convert::Infallible, time::Duration};

use axum::body::Body;
use http::{Request, Response};
use palisade_testkit::LogCapture;
use palisade_timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceExt, service_fn};
use tracing::Instrument;

/// `count` requests to a handler that never answers within the 1 s timeout, each polled inside a
/// `request` span naming its id; what the subscriber wrote.
async fn logged(layer: TimeoutLayer, count: usize) -> String {
    let captured = LogCapture::default();
    let _default = captured.install(tracing::Level::DEBUG);
    let mut svc = layer.layer(service_fn(|_: Request<Body>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    for i in 0..count {
        let request = Request::get("/").body(Body::empty()).unwrap();
        let span = tracing::info_span!("request", request_id = %format!("req-{i}"));
        let future = svc.ready().await.unwrap().call(request);
        future.instrument(span).await.unwrap();
    }
    captured.text()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timeout_is_one_warning_carrying_the_request_span() {
    let out = logged(TimeoutLayer::new(Duration::from_secs(1)).unwrap(), 1).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("WARN"), "{out}");
    assert!(lines[0].contains("request{request_id=req-0}"), "{out}");
    assert!(lines[0].contains("event=\"request_timed_out\""), "{out}");
    assert!(lines[0].contains("timeout_ms=1000"), "{out}");
    assert!(lines[0].contains("status=503"), "{out}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn observe_only_says_the_request_was_left_to_finish() {
    let layer = TimeoutLayer::builder()
        .timeout(Duration::from_secs(1))
        .observe_only()
        .build()
        .unwrap();
    let out = logged(layer, 1).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("event=\"request_timed_out_observed\""),
        "{out}"
    );
    assert!(out.contains("left to finish"), "{out}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flood_of_timeouts_writes_at_most_ten_lines_a_second() {
    // The cap counts real seconds; on the paused clock the 25 timeouts take no real time.
    let out = logged(TimeoutLayer::new(Duration::from_secs(1)).unwrap(), 25).await;
    assert_eq!(out.lines().count(), 10, "{out}");
}
