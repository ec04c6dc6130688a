//! Cost per request of the access log against tower-http's `TraceLayer` logging at `info` with
//! the same fields, in one run, each writing formatted lines to `io::sink` through
//! `tracing-subscriber`'s formatter (text, and JSON for ours): what an application pays for one
//! line per request. Tracing and metrics are off in our layer, so only the access log is measured.
//!
//! `cargo bench -p palisade-telemetry --bench access_log`
//!
//! `TraceLayer` gets a span with the method, path, user agent, client address and request id,
//! and one `info` event with the status and latency when the response head is ready (its
//! default `on_response`); ours writes one event with those fields and the route, outcome and
//! bytes sent when the body ends (here: when the response is dropped).

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{Empty, Full};
use palisade_core::RequestId;
use palisade_telemetry::{AccessLogConfig, LogFormat, TelemetryLayer, TracingConfig};
use palisade_testkit::bench::drive_with;
use tower::Layer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Dispatch, Level};
use tracing_subscriber::{Registry, layer::SubscriberExt};

type Inner = tower::util::ServiceFn<
    fn(Request<Empty<Bytes>>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

/// The inner service: "ok". Requests carry an (empty) HTTP body, as `TraceLayer` requires.
fn inner() -> Inner {
    fn handle(
        _: Request<Empty<Bytes>>,
    ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
    tower::service_fn(handle as fn(_) -> _)
}

fn request() -> Request<Empty<Bytes>> {
    let mut request = Request::get("/items/42?page=2")
        .header("user-agent", "bench/1.0")
        .body(Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 40_000))));
    request
        .extensions_mut()
        .insert(RequestId::new("01a24955-7629-705b-9576-1ea37542e5cb").unwrap());
    request
}

/// A subscriber writing `format` lines to `io::sink`, at `info`.
fn sink(format: LogFormat) -> Dispatch {
    let config = TracingConfig {
        log_format: format,
        log_filter: "info".to_owned(),
        log_to_stdout: false,
        ..TracingConfig::default()
    };
    Dispatch::new(Registry::default().with(config.log_layer(std::io::sink).unwrap()))
}

fn ours() -> palisade_telemetry::Telemetry<Inner> {
    TelemetryLayer::builder()
        .tracing(false)
        .metrics(false)
        .access_log(AccessLogConfig::on())
        .build()
        .unwrap()
        .layer(inner())
}

/// `iters` requests through `svc` with `dispatch` as the subscriber.
fn run<S, B>(svc: S, dispatch: &Dispatch, iters: u64) -> Duration
where
    S: tower::Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _default = tracing::dispatcher::set_default(dispatch);
    rt.block_on(drive_with(svc, iters, request))
}

fn bench(c: &mut Criterion) {
    let (text, json) = (sink(LogFormat::Text), sink(LogFormat::Json));
    let trace_layer = || {
        TraceLayer::new_for_http()
            .make_span_with(|request: &Request<Empty<Bytes>>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = request.uri().path(),
                    user_agent = request
                        .headers()
                        .get("user-agent")
                        .and_then(|v| v.to_str().ok()),
                    client = request
                        .extensions()
                        .get::<ConnectInfo<SocketAddr>>()
                        .map(|ConnectInfo(addr)| tracing::field::display(addr.ip())),
                    request_id = request
                        .extensions()
                        .get::<RequestId>()
                        .map(RequestId::as_str),
                )
            })
            .on_request(())
            .on_response(DefaultOnResponse::new().level(Level::INFO))
            .layer(inner())
    };
    let mut group = c.benchmark_group("access log, one line per request");
    group.bench_function("bare service", |b| {
        b.iter_custom(|n| run(inner(), &text, n));
    });
    group.bench_function("palisade access log, text", |b| {
        b.iter_custom(|n| run(ours(), &text, n));
    });
    group.bench_function("palisade access log, json", |b| {
        b.iter_custom(|n| run(ours(), &json, n));
    });
    group.bench_function("tower-http TraceLayer at info, text", |b| {
        b.iter_custom(|n| run(trace_layer(), &text, n));
    });
    group.bench_function("tower-http TraceLayer at info, json", |b| {
        b.iter_custom(|n| run(trace_layer(), &json, n));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
