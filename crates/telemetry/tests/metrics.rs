//! The HTTP metrics, read back from a debugging recorder (a thread-local recorder on a
//! current-thread runtime: the server, the client and the test share the thread).
//!
//! A debugging-recorder snapshot drains: gauges and counters read as the change since the last
//! snapshot, histograms as the samples recorded since.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::{Router, body::Body, routing::get};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};
use palisade_telemetry::TelemetryLayer;
use palisade_testkit::{Client, TestServer};
use tokio::sync::oneshot;
use tower::ServiceExt;

type Snapshot = Vec<(CompositeKey, DebugValue)>;

fn snapshot(snapshotter: &Snapshotter) -> Snapshot {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect()
}

fn labels(key: &CompositeKey) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = key
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    labels
}

fn find<'a>(
    s: &'a Snapshot,
    kind: MetricKind,
    name: &str,
    wanted: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    let mut wanted: Vec<(String, String)> = wanted
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    s.iter()
        .find(|(k, _)| k.kind() == kind && k.key().name() == name && labels(k) == wanted)
        .map(|(_, v)| v)
}

fn samples(s: &Snapshot, method: &str, route: &str, status: &str) -> usize {
    match find(
        s,
        MetricKind::Histogram,
        "http_server_request_duration_seconds",
        &[
            ("http_request_method", method),
            ("http_route", route),
            ("http_response_status_code", status),
        ],
    ) {
        Some(DebugValue::Histogram(values)) => values.len(),
        _ => 0,
    }
}

fn active(s: &Snapshot, method: &str) -> Option<f64> {
    match find(
        s,
        MetricKind::Gauge,
        "http_server_active_requests",
        &[("http_request_method", method), ("url_scheme", "http")],
    ) {
        Some(DebugValue::Gauge(g)) => Some(g.into_inner()),
        _ => None,
    }
}

fn app(layer: TelemetryLayer) -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|| async { "item" }).post(|| async { "made" }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy") }),
        )
        .layer(layer)
}

#[tokio::test]
async fn durations_are_labelled_by_method_route_template_and_status() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let server = TestServer::start(app(TelemetryLayer::new())).await;
    let client = Client::new();

    for id in 0..3 {
        assert_eq!(
            client
                .get(&server.url(&format!("/items/{id}")))
                .await
                .status,
            200
        );
    }
    assert_eq!(client.post(&server.url("/items/9")).await.status, 200);
    assert_eq!(client.get(&server.url("/fail")).await.status, 503);
    assert_eq!(
        client.get(&server.url("/wp-admin/setup.php")).await.status,
        404
    );
    assert_eq!(client.get(&server.url("/.env")).await.status, 404);
    let brew = Request::builder()
        .method(Method::from_bytes(b"BREW").unwrap())
        .uri(server.url("/items/1"))
        .body(Full::default())
        .unwrap();
    assert_eq!(client.send(brew).await.status, 405);
    server.shutdown().await;

    let s = snapshot(&snapshotter);
    assert_eq!(samples(&s, "GET", "/items/{id}", "200"), 3);
    assert_eq!(samples(&s, "POST", "/items/{id}", "200"), 1);
    assert_eq!(samples(&s, "GET", "/fail", "503"), 1);
    assert_eq!(
        samples(&s, "GET", "unmatched", "404"),
        2,
        "raw paths never become labels"
    );
    assert_eq!(samples(&s, "_OTHER", "/items/{id}", "405"), 1);
    let histograms: Vec<_> = s
        .iter()
        .filter(|(k, _)| k.key().name() == "http_server_request_duration_seconds")
        .collect();
    assert_eq!(histograms.len(), 5, "exactly the label sets above");
    assert_eq!(active(&s, "GET"), Some(0.0));
    assert_eq!(active(&s, "POST"), Some(0.0));
    assert_eq!(active(&s, "_OTHER"), Some(0.0));
    for (_, value) in &s {
        if let DebugValue::Histogram(values) = value {
            assert!(
                values
                    .iter()
                    .all(|v| v.into_inner() >= 0.0 && v.into_inner() < 60.0)
            );
        }
    }
}

/// A body that sends one chunk and ends when released.
struct Held {
    first: Option<Bytes>,
    release: oneshot::Receiver<()>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        Pin::new(&mut self.release).poll(cx).map(|_| None)
    }
}

use std::future::Future;

#[tokio::test]
async fn a_request_is_active_and_unmeasured_until_its_body_ends() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let releases = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler_releases = releases.clone();
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let release = handler_releases.lock().unwrap().pop().unwrap();
                async move {
                    Body::new(Held {
                        first: Some(Bytes::from_static(b"chunk")),
                        release,
                    })
                }
            }),
        )
        .layer(TelemetryLayer::new());

    // Completed body.
    let (release, rx) = oneshot::channel();
    releases.lock().unwrap().push(rx);
    let response = app
        .clone()
        .oneshot(Request::get("/stream").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "chunk"
    );
    let s = snapshot(&snapshotter);
    assert_eq!(
        active(&s, "GET"),
        Some(1.0),
        "headers sent, body still open"
    );
    assert_eq!(
        samples(&s, "GET", "/stream", "200"),
        0,
        "not measured before the body ends"
    );
    release.send(()).unwrap();
    assert!(body.frame().await.is_none());
    let s = snapshot(&snapshotter);
    assert_eq!(
        active(&s, "GET"),
        Some(-1.0),
        "the body ended: no longer active"
    );
    assert_eq!(samples(&s, "GET", "/stream", "200"), 1);

    // Dropped body (the client went away): no longer active, measured with its status.
    let (_release, rx) = oneshot::channel::<()>();
    releases.lock().unwrap().push(rx);
    let response = app
        .clone()
        .oneshot(Request::get("/stream").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(active(&snapshot(&snapshotter), "GET"), Some(1.0));
    drop(response);
    let s = snapshot(&snapshotter);
    assert_eq!(active(&s, "GET"), Some(-1.0));
    assert_eq!(samples(&s, "GET", "/stream", "200"), 1);

    // A request dropped before its response: no longer active, not measured (no status).
    let slow = Router::new()
        .route("/slow", get(std::future::pending::<&'static str>))
        .layer(TelemetryLayer::new());
    let mut future = Box::pin(slow.oneshot(Request::get("/slow").body(Body::empty()).unwrap()));
    assert!(futures_poll_once(&mut future).await.is_none());
    assert_eq!(active(&snapshot(&snapshotter), "GET"), Some(1.0));
    drop(future);
    let s = snapshot(&snapshotter);
    assert_eq!(active(&s, "GET"), Some(-1.0));
    assert!(
        !s.iter()
            .any(|(k, _)| labels(k).contains(&("http_route".to_owned(), "/slow".to_owned())))
    );
}

/// Polls `future` once.
async fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *future).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn metrics_off_records_nothing_and_both_off_passes_through() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let off = TelemetryLayer::builder().metrics(false).build().unwrap();
    let response = app(off)
        .oneshot(Request::get("/items/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "item"
    );
    let both_off = TelemetryLayer::builder()
        .metrics(false)
        .tracing(false)
        .build()
        .unwrap();
    let response = app(both_off)
        .oneshot(Request::get("/items/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "item"
    );
    assert!(snapshot(&snapshotter).is_empty());
}

#[tokio::test]
async fn every_metric_is_described() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let response = app(TelemetryLayer::new())
        .oneshot(Request::get("/items/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    drop(response);
    let described: Vec<(String, Option<metrics::Unit>)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, unit, description, _)| {
            assert!(
                description.is_some(),
                "{} has no description",
                k.key().name()
            );
            (k.key().name().to_owned(), unit)
        })
        .collect();
    assert!(described.contains(&(
        "http_server_request_duration_seconds".to_owned(),
        Some(metrics::Unit::Seconds)
    )));
    assert!(
        described
            .iter()
            .any(|(name, _)| name == "http_server_active_requests")
    );
}
