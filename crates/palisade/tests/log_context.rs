//! What a line logged inside a request says about the request, through the preset and the
//! logger `palisade::telemetry` builds: one span naming the request id, not two, and not the
//! server span's other attributes.

use axum::{Router, body::Body, routing::get};
use http::Request;
use palisade::{PalisadeConfig, Stack, core::OverloadState, telemetry::TracingConfig};
use palisade_testkit::LogCapture;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

/// The lines logged while the preset built from `config` serves one request with id `req-1`,
/// whose handler logs one line.
async fn logged(config: PalisadeConfig) -> String {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let logger = TracingConfig::default()
        .log_layer(move || writer.clone())
        .unwrap();
    // This thread's subscriber: the current-thread runtime polls the request here.
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::Registry::default().with(logger));
    let stack = Stack::builder()
        .config(config)
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    stack.health().mark_started();
    let app = stack.apply(Router::new().route(
        "/items",
        get(|| async {
            tracing::info!("inside the handler");
            "items"
        }),
    ));
    let request = Request::get("/items?page=2")
        .header("x-request-id", "req-1")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    capture
        .text()
        .lines()
        .filter(|l| l.contains("inside the handler"))
        .collect()
}

#[tokio::test]
async fn one_span_names_the_request_and_nothing_else() {
    let line = logged(PalisadeConfig::default()).await;
    assert!(line.contains("HTTP request{request_id=req-1}: "), "{line}");
    assert!(!line.contains("request{request_id=req-1}:HTTP"), "{line}");
    assert!(!line.contains("url.path"), "{line}");
}

#[tokio::test]
async fn without_telemetry_the_request_id_layer_names_the_request() {
    let mut config = PalisadeConfig::default();
    config.layers.telemetry = false;
    let line = logged(config).await;
    assert!(line.contains("request{request_id=req-1}: "), "{line}");
    assert!(!line.contains("HTTP request"), "{line}");
}
