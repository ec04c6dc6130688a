//! OpenTelemetry spans and Prometheus metrics for axum/hyper servers, done the way the
//! conventions say and cheap enough to leave on.
//!
//! - [`TelemetryLayer`]: one layer, two jobs, each on or off. Per request it opens a **server
//!   span** following the OpenTelemetry HTTP semantic conventions, continues the caller's trace
//!   from a strictly parsed W3C `traceparent`/`tracestate` ([`propagation`]), and records the
//!   **HTTP server metrics** (`http_server_request_duration_seconds` with the semantic-convention
//!   buckets, `http_server_active_requests`). The span and the duration end when the response
//!   **body** ends, not when the headers leave.
//! - [`TracePropagationLayer`]: for HTTP clients; outgoing requests carry the current trace
//!   context (with a client span), so a handler that calls another service continues the trace.
//! - [`TraceId`]: an axum extractor for the request's trace id.
//! - [`init`] / [`TracingConfig`]: installs a `tracing` subscriber with an OpenTelemetry layer
//!   exporting over OTLP (gRPC by default, HTTP/protobuf with the `otlp-http` feature),
//!   configured by the standard `OTEL_*` variables, through a bounded batch queue: a slow or
//!   absent collector costs dropped (and counted) spans and one warning a minute, never request
//!   latency or memory.
//! - [`PrometheusMetrics`]: installs the global `metrics` recorder (Prometheus, with real
//!   histograms) and serves `/metrics` on the application's router or on a separate listener,
//!   for every Palisade crate's metrics.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use palisade_telemetry::{PrometheusConfig, TelemetryLayer, TraceId};
//! use tower::ServiceExt;
//!
//! async fn handler(trace: Option<TraceId>) -> String {
//!     tracing::info!("handling"); // an event of the request's span
//!     format!("trace {}", trace.map(|t| t.to_string()).unwrap_or_default())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // In main: `let _tracing = palisade_telemetry::init()?;` and
//! // `let metrics = palisade_telemetry::PrometheusMetrics::install()?;` (both global, once).
//! // Here, a local recorder so the example runs anywhere:
//! let (recorder, metrics) = PrometheusConfig::default().build_recorder().unwrap();
//! let _local = metrics::set_default_local_recorder(&recorder);
//!
//! let app = Router::new()
//!     .route("/items/{id}", get(handler))
//!     .layer(TelemetryLayer::builder().build().expect("a valid configuration"));
//! let app = metrics.add_route(app); // GET /metrics, added after the layer: not measured
//!
//! let request = http::Request::get("/items/7").body(axum::body::Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! drop(response); // the body ends: the duration is recorded
//!
//! let exposition = metrics.render();
//! assert!(exposition.contains(
//!     r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200",le="0.005"}"#
//! ));
//! # }
//! ```
//!
//! # Wiring a server
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use palisade_telemetry::{PrometheusMetrics, TelemetryLayer, TracePropagationLayer};
//! use tower::Layer;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tracing = palisade_telemetry::init()?; // OTEL_* environment, RUST_LOG, stdout logs
//! let metrics = PrometheusMetrics::install()?;
//!
//! // An HTTP client whose requests continue the current trace.
//! let client = TracePropagationLayer::new().layer(
//!     hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//!         .build_http::<axum::body::Body>(),
//! );
//! # let _ = client;
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(TelemetryLayer::new());
//! let app = metrics.add_route(app);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//!     .await?;
//! tracing.shutdown().await?; // flush the spans still queued
//! # Ok(()) }
//! ```
//!
//! Put the layer on the router with `Router::layer` (as above): axum then runs it per route,
//! after routing, so the route template (`MatchedPath`) is known for the span name and the
//! `http_route` label; a router wrapped from outside sees no route and labels everything
//! `unmatched`. In the Palisade preset stack it sits just inside `palisade-request-id`, so the
//! server span carries `request_id`, and outside the limiters, so their rejections (503, 429)
//! are measured and traced too. Serve with `into_make_service_with_connect_info::<SocketAddr>()`
//! for `client.address`.
//!
//! # The server span
//!
//! Name `{method} {http.route}` (`GET /items/{id}`); `{method}` when no route matched (404s,
//! scanners); `HTTP` in place of the method for methods outside the standard set (the
//! conventions' rule; the attribute says `_OTHER`). Never the raw path. Kind `server`, target
//! `palisade_telemetry`, level `INFO` (configurable).
//!
//! | attribute | value |
//! |---|---|
//! | `http.request.method` | `GET`, `POST`, ... or `_OTHER` |
//! | `http.request.method_original` | the method as sent, only when `_OTHER` (cut at 64 bytes) |
//! | `url.path` | the path, without the query |
//! | `url.scheme` | `http` or `https`: the target's scheme, else [`TelemetryConfig::default_scheme`] |
//! | `url.query` | only with [`TelemetryConfig::record_query`], sensitive values replaced by `REDACTED` |
//! | `http.route` | the axum route template, only when a route matched |
//! | `http.response.status_code` | the status code (integer) |
//! | `network.protocol.version` | `1.0`, `1.1`, `2`, `3` |
//! | `user_agent.original` | the `User-Agent` header (cut at 512 bytes) |
//! | `client.address` | the TCP peer (`ConnectInfo`), never a forwarded header |
//! | `server.address`, `server.port` | from `Host` (or the HTTP/2 authority); port defaults to the scheme's |
//! | `error.type` | the status code for 5xx, `response_body_error` when the body fails, the error's type name when the service fails |
//! | `request_id` | the `palisade-request-id` id, when that layer runs first (or records it, when it runs inside) |
//! | `http.request.header.<name>`, `http.response.header.<name>` | only the headers in [`TelemetryConfig::request_headers`] / [`TelemetryConfig::response_headers`]; credential headers are refused |
//!
//! Status: 5xx sets the span status to error; 4xx leaves it unset (the client's error, not the
//! server's). The span ends when the response body completes, fails, or is dropped.
//!
//! **Parent.** With a valid incoming `traceparent` the server span is the child of that remote
//! span (and propagates its `tracestate`); otherwise it starts a new trace, even inside another
//! `tracing` span. [`TelemetryConfig::accept_incoming_context`] turns incoming context off for services
//! at a trust boundary.
//!
//! # Metrics
//!
//! See [`mod@metrics`] for the full list. Labels are bounded whatever clients send: the route
//! template or `unmatched`, nine methods or `_OTHER`, status codes. The layer keeps its own handle
//! cache, so a request costs a shared-lock map read and atomic updates, not a label-set
//! allocation and registry lookup.
//!
//! # Off means off
//!
//! - [`TelemetryConfig::tracing`] off: no span, no header parsing, no extension.
//! - No subscriber interested in `palisade_telemetry` spans (none installed, or filters below
//!   the span level): one callsite check, then the same as off.
//! - [`TelemetryConfig::metrics`] off: no metric work.
//! - Both off: the layer passes requests and bodies through.
//!
//! There is no observe-only mode: the layer observes and never enforces anything.

mod access_log;
mod attributes;
mod client;
mod config;
mod error;
mod export;
mod extract;
mod future;
mod layer;
mod log_fields;
mod log_format;
pub mod metrics;
mod prometheus;
pub mod propagation;
mod service;

pub use access_log::{ACCESS_LOG_TARGET, AccessLogConfig, ClientAddress};
pub use client::{ClientFuture, TracePropagation, TracePropagationLayer};
pub use config::{
    DEFAULT_REDACTED_QUERY_KEYS, DEFAULT_SENSITIVE_HEADERS, TelemetryBuilder, TelemetryConfig,
};
pub use error::TelemetryError;
pub use export::{
    ExportStats, LogFormat, OtlpProtocol, TraceSampler, TracingConfig, TracingGuard, init,
};
pub use extract::{MissingTraceId, TraceId};
pub use future::ResponseFuture;
pub use layer::TelemetryLayer;
pub use palisade_core::SpanLevel;
pub use prometheus::{CONTENT_TYPE, MetricsServer, PrometheusConfig, PrometheusMetrics};
pub use service::{RequestTelemetry, TARGET, Telemetry};
