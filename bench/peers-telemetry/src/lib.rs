//! The stacks under comparison, built the same way for the criterion bench and the callgrind
//! runner: an axum `Router` with one route (`/items/{id}`), the same request with a few usual
//! headers, and each middleware as its documentation shows it.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::get};
use http::Request;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SpanData, SpanExporter},
};
use palisade_telemetry::{
    PrometheusConfig, PrometheusMetrics, TelemetryLayer, TraceSampler, TracingConfig, TracingGuard,
};
use tower::{Service, ServiceExt};
use tracing::Dispatch;
use tracing_subscriber::{Registry, layer::SubscriberExt};

/// Discards spans: the export thread does next to nothing.
#[derive(Debug)]
pub struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

/// One subscriber for every stack: `tracing_opentelemetry`'s layer over the SDK with a batch
/// processor (palisade-telemetry's pipeline, which every peer can use as well).
pub fn subscriber(sampler: TraceSampler) -> (TracingGuard, Dispatch) {
    // The peers extract `traceparent` with the global propagator.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let guard = TracingConfig {
        sampler,
        max_queue_size: 65_536,
        log_to_stdout: false,
        // axum-tracing-opentelemetry makes its spans at TRACE: export every level.
        span_filter: "trace".to_owned(),
        ..TracingConfig::default()
    }
    .build_with_exporter(Discard)
    .expect("valid pipeline");
    let dispatch = Dispatch::new(Registry::default().with(guard.layer()));
    (guard, dispatch)
}

/// Installs the Prometheus recorder as the global one (axum-prometheus only uses the global).
pub fn install_recorder() -> PrometheusMetrics {
    let (recorder, metrics) = PrometheusConfig::default()
        .build_recorder()
        .expect("valid recorder");
    metrics::set_global_recorder(recorder).expect("one recorder per process");
    metrics
}

fn routes() -> Router {
    Router::new().route("/items/{id}", get(|| async { "item" }))
}

/// The stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// The router alone.
    Bare,
    /// `palisade_telemetry::TelemetryLayer`, tracing only.
    PalisadeTracing,
    /// `palisade_telemetry::TelemetryLayer`, metrics only.
    PalisadeMetrics,
    /// `palisade_telemetry::TelemetryLayer`, both.
    PalisadeBoth,
    /// `axum_tracing_opentelemetry::middleware::OtelAxumLayer`.
    AxumTracingOpentelemetry,
    /// `tower_otel::trace::HttpLayer::server(INFO).trace_body()` (span ends with the body).
    TowerOtel,
    /// `axum_prometheus::BaseMetricLayer`.
    AxumPrometheus,
}

impl Stack {
    /// Every stack, in report order.
    pub const ALL: [Stack; 7] = [
        Stack::Bare,
        Stack::PalisadeTracing,
        Stack::AxumTracingOpentelemetry,
        Stack::TowerOtel,
        Stack::PalisadeMetrics,
        Stack::AxumPrometheus,
        Stack::PalisadeBoth,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Bare => "bare router",
            Stack::PalisadeTracing => "palisade tracing",
            Stack::PalisadeMetrics => "palisade metrics",
            Stack::PalisadeBoth => "palisade tracing+metrics",
            Stack::AxumTracingOpentelemetry => "axum-tracing-opentelemetry",
            Stack::TowerOtel => "tower-otel",
            Stack::AxumPrometheus => "axum-prometheus",
        }
    }

    /// Whether the stack traces (benches run it under each sampler).
    pub fn traces(self) -> bool {
        matches!(
            self,
            Stack::PalisadeTracing
                | Stack::PalisadeBoth
                | Stack::AxumTracingOpentelemetry
                | Stack::TowerOtel
        )
    }

    /// The router with this stack's layer.
    pub fn router(self) -> Router {
        let palisade = |tracing, metrics| {
            TelemetryLayer::builder()
                .tracing(tracing)
                .metrics(metrics)
                .build()
                .expect("valid layer")
        };
        match self {
            Stack::Bare => routes(),
            Stack::PalisadeTracing => routes().layer(palisade(true, false)),
            Stack::PalisadeMetrics => routes().layer(palisade(false, true)),
            Stack::PalisadeBoth => routes().layer(palisade(true, true)),
            Stack::AxumTracingOpentelemetry => {
                routes().layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
            }
            Stack::TowerOtel => routes()
                .layer(tower_otel::trace::HttpLayer::server(tracing::Level::INFO).trace_body()),
            Stack::AxumPrometheus => routes().layer(axum_prometheus::BaseMetricLayer::new()),
        }
    }
}

/// The request every stack serves: a route with a parameter, usual headers, and optionally an
/// incoming (sampled) trace context.
pub fn request(traceparent: bool) -> Request<Body> {
    let mut request = Request::get("/items/42")
        .header("host", "api.example.com")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json");
    if traceparent {
        request = request.header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
    }
    request.body(Body::empty()).expect("request")
}

/// `iters` requests through `router`, one after the other; each response (and its body) is
/// dropped, which ends body-scoped spans and measurements.
///
/// # Panics
///
/// When the router fails (it cannot).
pub async fn drive(mut router: Router, iters: u64, traceparent: bool) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let response = ServiceExt::<Request<Body>>::ready(&mut router)
            .await
            .expect("ready")
            .call(request(traceparent))
            .await
            .expect("call");
        drop(black_box(response));
    }
    start.elapsed()
}
