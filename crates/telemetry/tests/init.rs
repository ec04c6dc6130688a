//! `TracingConfig::init`: the global subscriber exports server spans whatever the log filter
//! says, and a second init is an error, not a panic. One test: it sets the process's globals.

mod common;

use std::time::Duration;

use axum::{Router, routing::get};
use common::{grpc_receiver, hex, one};
use palisade_telemetry::{TelemetryError, TelemetryLayer, TraceId, TraceSampler, TracingConfig};
use palisade_testkit::{Client, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_installs_a_subscriber_that_exports_server_spans() {
    let (addr, received) = grpc_receiver().await;
    // As from the environment, with logs at `warn`: spans are exported all the same.
    let env = [
        ("OTEL_SERVICE_NAME", "init-test".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let config = TracingConfig::from_lookup(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    assert_eq!(config.log_filter, "warn");
    let guard = TracingConfig {
        sampler: TraceSampler::AlwaysOn,
        export_timeout: Duration::from_secs(5),
        ..config.clone()
    }
    .init()
    .unwrap();
    assert!(guard.is_enabled());

    let app = Router::new()
        .route(
            "/hello/{name}",
            get(|trace: TraceId| async move {
                tracing::info!("an event of the server span");
                trace.to_string()
            }),
        )
        .layer(TelemetryLayer::new());
    let server = TestServer::start(app).await;
    let response = Client::new().get(&server.url("/hello/world")).await;
    assert_eq!(response.status, 200);

    let spans = received.wait_for(1).await;
    let span = one(&spans, "GET /hello/{name}");
    assert_eq!(
        hex(&span.trace_id),
        response.text(),
        "the extractor's trace id"
    );
    assert!(
        span.events
            .iter()
            .any(|e| e.name == "an event of the server span"),
        "handler events become span events: {:?}",
        span.events
    );
    assert!(
        received
            .spans()
            .iter()
            .all(|(service, _)| service == "init-test")
    );

    let again = config.init();
    assert!(
        matches!(
            again,
            Err(TelemetryError::AlreadyInstalled("tracing subscriber"))
        ),
        "{again:?}"
    );

    server.shutdown().await;
    guard.shutdown().await.unwrap();
}
