//! The global Prometheus recorder: installed once per process (this test binary has one test),
//! a second install is an error and not a panic, and the listener serves the exposition.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use palisade_telemetry::{CONTENT_TYPE, PrometheusConfig, TelemetryError, TelemetryLayer};
use palisade_testkit::{Client, TestServer};

#[tokio::test]
async fn install_once_serve_on_a_listener_and_refuse_a_second_install() {
    let metrics = PrometheusConfig {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..PrometheusConfig::default()
    }
    .install()
    .unwrap();
    let listener = metrics.listen_addr().expect("a listener was started");

    let app = Router::new()
        .route("/hello", get(|| async { "hi" }))
        .layer(TelemetryLayer::new());
    let server = TestServer::start(app).await;
    let client = Client::new();
    assert_eq!(client.get(&server.url("/hello")).await.status, 200);
    server.shutdown().await;

    let response = client.get(&format!("http://{listener}/metrics")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(CONTENT_TYPE));
    let text = response.text();
    assert!(text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/hello",http_response_status_code="200"} 1"#), "{text}");
    assert_eq!(
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("# HELP http_server"))
            .count(),
        2
    );
    assert_eq!(
        client.get(&format!("http://{listener}/other")).await.status,
        404
    );

    // A second install, with any configuration: an error naming the global, never a panic.
    let again = palisade_telemetry::PrometheusMetrics::install();
    assert!(
        matches!(
            again,
            Err(TelemetryError::AlreadyInstalled("metrics recorder"))
        ),
        "{again:?}"
    );
    let bad = PrometheusConfig {
        path: String::new(),
        ..PrometheusConfig::default()
    }
    .install();
    assert!(matches!(bad, Err(TelemetryError::Config(_))), "{bad:?}");
}
