//! Spans exported over OTLP HTTP/protobuf (feature `otlp-http`) to a real axum receiver that
//! decodes `ExportTraceServiceRequest` with prost.

#![cfg(feature = "otlp-http")]

mod common;

use std::time::Duration;

use axum::{Router, body::Bytes, extract::State, http::header, routing::post};
use common::{Received, WithDispatchLayer, hex, int_attr, string_attr};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use palisade_telemetry::{OtlpProtocol, TelemetryLayer, TraceSampler, TracingConfig};
use palisade_testkit::{Client, TestServer};
use prost::Message;
use tracing::Dispatch;
use tracing_subscriber::{Registry, layer::SubscriberExt};

async fn receive(
    State(received): State<Received>,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("a protobuf export request");
    received.push(request);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse {
            partial_success: None,
        }
        .encode_to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_over_http_protobuf() {
    let received = Received::default();
    let collector = TestServer::start(
        Router::new()
            .route("/v1/traces", post(receive))
            .with_state(received.clone()),
    )
    .await;
    // As from the environment: the base endpoint gets `/v1/traces`.
    let env = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url("")),
        ("OTEL_SERVICE_NAME", "http-export-test".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
    ];
    let config = TracingConfig::from_lookup(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    assert_eq!(config.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(config.endpoint, Some(collector.url("/v1/traces")));
    let guard = TracingConfig {
        sampler: TraceSampler::AlwaysOn,
        log_to_stdout: false,
        export_timeout: Duration::from_secs(5),
        ..config
    }
    .build()
    .unwrap();
    let dispatch = Dispatch::new(Registry::default().with(guard.layer()));

    let app = Router::new()
        .route("/orders/{id}", axum::routing::get(|| async { "order" }))
        .layer(TelemetryLayer::new())
        .layer(WithDispatchLayer(dispatch));
    let server = TestServer::start(app).await;
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let request = http::Request::get(server.url("/orders/7"))
        .header("traceparent", parent)
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(Client::new().send(request).await.status, 200);

    let spans = received.wait_for(1).await;
    let span = &spans[0];
    assert_eq!(span.name, "GET /orders/{id}");
    assert_eq!(hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hex(&span.parent_span_id), "b7ad6b7169203331");
    assert_eq!(
        string_attr(&span.attributes, "http.route").as_deref(),
        Some("/orders/{id}")
    );
    assert_eq!(
        int_attr(&span.attributes, "http.response.status_code"),
        Some(200)
    );
    assert!(
        received
            .spans()
            .iter()
            .all(|(service, _)| service == "http-export-test")
    );

    server.shutdown().await;
    guard.shutdown().await.unwrap();
    collector.shutdown().await;
}
