//! The protections of Palisade's preset assembled from peer crates, as a careful user would wire
//! them (one `ServiceBuilder`, one `Router::layer`), served by `axum::serve`: the "peer stack" of
//! `cargo xtask bench baseline`.
//!
//! `peer-stack-server <trace|otel> <bare|production>` prints `listening on <addr>` and serves
//! `GET /hello` and `GET /api/items` on one Tokio worker until killed.
//!
//! - `trace`: a request span from tower-http's `TraceLayer`; `otel`: from
//!   axum-tracing-opentelemetry (`OtelAxumLayer` + `OtelInResponseLayer`), whose span carries the
//!   OpenTelemetry HTTP semantic-convention attributes as Palisade's does.
//! - `bare`: no metrics recorder, no subscriber; `production`: axum-prometheus's Prometheus
//!   recorder installed and a `tracing` subscriber logging at `info` (to stderr, so that the
//!   harness's stdout pipe never fills), as the Palisade example server runs.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    Json, Router,
    error_handling::HandleErrorLayer,
    http::{HeaderName, HeaderValue, StatusCode},
    response::IntoResponse,
    routing::get,
};
use serde::Serialize;
use tower::{BoxError, ServiceBuilder, limit::GlobalConcurrencyLimitLayer, load_shed::LoadShedLayer};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

/// The response headers Palisade's default security-headers policy sends, with the same values.
const SECURITY_HEADERS: [(&str, &str); 11] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    (
        "permissions-policy",
        "accelerometer=(), browsing-topics=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), hid=(), magnetometer=(), microphone=(), midi=(), payment=(), serial=(), usb=(), xr-spatial-tracking=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-site"),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
    ("origin-agent-cluster", "?1"),
];

/// Palisade's preset defaults: 1 000 requests in flight, a 30 s timeout, 2 MiB bodies.
const MAX_IN_FLIGHT: usize = 1_000;
const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

#[derive(Serialize)]
struct Item {
    id: u32,
    name: &'static str,
    price_cents: u32,
}

/// The example server's `/api/items`.
const ITEMS: [Item; 3] = [
    Item {
        id: 1,
        name: "palisade stake",
        price_cents: 1_250,
    },
    Item {
        id: 2,
        name: "gate hinge",
        price_cents: 4_900,
    },
    Item {
        id: 3,
        name: "watchtower kit",
        price_cents: 129_900,
    },
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Span {
    Trace,
    Otel,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("peer-stack-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let usage = "usage: peer-stack-server <trace|otel> <bare|production>";
    let mut args = std::env::args().skip(1);
    let span = match args.next().as_deref() {
        Some("trace") => Span::Trace,
        Some("otel") => Span::Otel,
        _ => return Err(usage.to_owned()),
    };
    let production = match args.next().as_deref() {
        Some("bare") => false,
        Some("production") => true,
        _ => return Err(usage.to_owned()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let app = app(span, production)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "listening on {}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .map_err(|e| e.to_string())
    })
}

fn app(span: Span, production: bool) -> Result<Router, String> {
    let routes = Router::new()
        .route("/hello", get(|| async { "Hello, World!" }))
        .route("/api/items", get(|| async { Json(&ITEMS) }));
    let metrics = if production {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init()
            .map_err(|e| e.to_string())?;
        // Installs the global Prometheus recorder; the handle renders `/metrics`.
        let (layer, handle) = axum_prometheus::PrometheusMetricLayer::pair();
        let routes = routes.route("/metrics", get(move || async move { handle.render() }));
        return Ok(layered(routes, span, layer));
    } else {
        // Records into whatever recorder is installed: none.
        axum_prometheus::PrometheusMetricLayer::new()
    };
    Ok(layered(routes, span, metrics))
}

/// The whole stack, outermost first, applied with one `Router::layer`.
fn layered(
    routes: Router,
    span: Span,
    metrics: axum_prometheus::PrometheusMetricLayer<'static>,
) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let security = SECURITY_HEADERS.map(|(name, value)| {
        SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    });
    let [h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10] = security;
    let protections = ServiceBuilder::new()
        .layer(h0)
        .layer(h1)
        .layer(h2)
        .layer(h3)
        .layer(h4)
        .layer(h5)
        .layer(h6)
        .layer(h7)
        .layer(h8)
        .layer(h9)
        .layer(h10)
        .layer(HandleErrorLayer::new(|_: BoxError| async {
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response()
        }))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    match span {
        Span::Trace => routes.layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http())
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(metrics)
                .layer(protections),
        ),
        Span::Otel => routes.layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
                .layer(axum_tracing_opentelemetry::middleware::OtelInResponseLayer)
                .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(metrics)
                .layer(protections),
        ),
    }
}
