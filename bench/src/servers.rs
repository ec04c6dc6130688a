//! Building blocks for servers under test, shared by the scenarios.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
    serve::ListenerExt,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use palisade::{
    concurrency_limit::{ConcurrencyLimitLayer, Watermark},
    core::OverloadState,
    request_id::RequestIdLayer,
    security_headers::SecurityHeadersLayer,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::{ServiceBuilder, ServiceExt};

use crate::scenario::{App, ServerArgs};

/// Bounded capacity: a pool of `workers` slots, each busy `time` per request (a sleep, so capacity
/// does not depend on how noisy the CPU is); requests beyond the pool queue for a slot, as requests
/// queue for a thread pool or a database connection pool.
#[derive(Debug, Clone)]
pub struct Work {
    pool: Arc<Semaphore>,
    time: Duration,
}

impl Work {
    /// A pool of `workers` slots of `time` each.
    pub fn new(workers: usize, time: Duration) -> Self {
        Self {
            pool: Arc::new(Semaphore::new(workers)),
            time,
        }
    }

    /// From `--workers` (default 8) and `--work-ms` (default 10).
    ///
    /// # Errors
    ///
    /// Invalid numbers.
    pub fn from_args(args: &ServerArgs) -> Result<Self, String> {
        let workers = usize::try_from(args.number("workers", 8)?).map_err(|e| e.to_string())?;
        Ok(Self::new(
            workers,
            Duration::from_millis(args.number("work-ms", 10)?),
        ))
    }

    /// One unit of work.
    ///
    /// # Panics
    ///
    /// Never: the pool's semaphore is never closed.
    pub async fn run(&self) -> &'static str {
        let _slot = self.pool.acquire().await.expect("pool open");
        tokio::time::sleep(self.time).await;
        "done"
    }
}

/// An item of the example server's catalogue.
#[derive(Debug, serde::Serialize)]
pub struct Item {
    id: u32,
    name: &'static str,
    price_cents: u32,
}

/// The example server's `/api/items`: three items serialized to JSON per request.
pub const ITEMS: [Item; 3] = [
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

/// A router with `GET /hello` (hello world), `GET /api/items` (the example server's JSON list)
/// and `GET /work` (one unit of `work`).
pub fn hello_and_work(work: Work) -> Router {
    Router::new()
        .route("/hello", get(|| async { "Hello, World!" }))
        .route("/api/items", get(|| async { axum::Json(&ITEMS) }))
        .route(
            "/work",
            get(|State(work): State<Work>| async move { work.run().await }),
        )
        .with_state(work)
}

/// The production preset configured from `PALISADE_*` (as any Palisade server), started.
fn production_stack() -> Result<palisade::Stack, String> {
    stack_from(palisade::PalisadeConfig::load().map_err(|e| e.to_string())?)
}

fn stack_from(config: palisade::PalisadeConfig) -> Result<palisade::Stack, String> {
    let stack = palisade::Stack::builder()
        .config(config)
        .build()
        .map_err(|e| e.to_string())?;
    stack.health().mark_started();
    Ok(stack)
}

/// [`hello_and_work`], whose hello world answers with the response headers the production preset
/// sends (its security headers and an `x-request-id`, with the values of one preset response)
/// without any middleware: the cost of sending those bytes, a floor under any layer that adds
/// them. The headers are captured from the preset on the first request.
///
/// # Errors
///
/// Invalid `PALISADE_*` configuration.
///
/// # Panics
///
/// Never: the captured request is built from constants.
pub fn hello_with_preset_headers(work: Work) -> Result<Router, String> {
    let stack = production_stack()?;
    let preset = stack.apply(Router::new().route("/hello", get(|| async { "Hello, World!" })));
    let captured: Arc<tokio::sync::OnceCell<HeaderMap>> = Arc::default();
    let hello = move || {
        let (preset, captured) = (preset.clone(), captured.clone());
        async move {
            let headers = captured
                .get_or_init(|| async {
                    let request = axum::http::Request::get("/hello")
                        .body(axum::body::Body::empty())
                        .expect("a valid request");
                    let Ok(response) = preset.oneshot(request).await;
                    let mut headers = response.headers().clone();
                    for framing in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::DATE] {
                        headers.remove(framing);
                    }
                    headers
                })
                .await;
            // The cheapest way to send them: a copy of a ready map, not an insertion per header.
            let mut response =
                axum::response::Response::new(axum::body::Body::from("Hello, World!"));
            *response.headers_mut() = headers.clone();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    };
    Ok(Router::new()
        .route("/hello", get(hello))
        .route(
            "/work",
            get(|State(work): State<Work>| async move { work.run().await }),
        )
        .with_state(work))
}

/// tower's `ConcurrencyLimit(max)` + `LoadShed`, with `HandleErrorLayer` turning overload into 503.
pub fn tower_limit(router: Router, max: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response()
            }))
            .load_shed()
            .concurrency_limit(max),
    )
}

/// Palisade's in-flight limiter with `max` and the default 0.8 / 0.6 marks, publishing into
/// `overload`.
///
/// # Errors
///
/// Invalid configuration.
pub fn palisade_limiter(
    max: u32,
    overload: &OverloadState,
) -> Result<ConcurrencyLimitLayer, String> {
    palisade_limiter_with(max, 0.6, overload)
}

/// Palisade's in-flight limiter with `max`, high water 0.8 and low water `low`, publishing into
/// `overload`.
///
/// # Errors
///
/// Invalid configuration.
pub fn palisade_limiter_with(
    max: u32,
    low: f64,
    overload: &OverloadState,
) -> Result<ConcurrencyLimitLayer, String> {
    ConcurrencyLimitLayer::builder()
        .max_in_flight(max)
        .high_water(Watermark::fraction(0.8))
        .low_water(Watermark::fraction(low))
        .overload_state(overload.clone())
        .build()
        .map_err(|e| e.to_string())
}

/// The Palisade stack as far as it exists, in preset order (request id, security headers,
/// in-flight limit), around `router`.
///
/// # Errors
///
/// Invalid configuration.
pub fn palisade_stack(router: Router, max: u32) -> Result<Router, String> {
    Ok(router
        .layer(palisade_limiter(max, &OverloadState::new())?)
        .layer(SecurityHeadersLayer::api())
        .layer(RequestIdLayer::new()))
}

/// `router` inside `palisade::Stack::builder()` with its defaults, and the settings for
/// `palisade::serve`: what a user gets from the README's two calls. `PALISADE_*__*` variables
/// apply as in any Palisade server (`PALISADE_LAYERS__REQUEST_ID=false` measures the stack
/// without request ids).
///
/// # Errors
///
/// Invalid configuration.
pub fn palisade_preset(router: Router) -> Result<App, String> {
    let stack = production_stack()?;
    Ok(App::Palisade(stack.apply(router), Box::new(stack.server())))
}

/// [`palisade_preset`] with the access log on, and a process-wide subscriber that formats its
/// lines (text, as the example logs by default) into `io::sink`: the cost of writing one line per
/// request, not of a disk. Only `palisade::access` is enabled, so no span is created that the
/// preset alone would not create.
///
/// # Errors
///
/// Invalid `PALISADE_*` configuration, or a subscriber already installed.
pub fn palisade_preset_with_access_log(router: Router) -> Result<App, String> {
    use tracing_subscriber::layer::SubscriberExt;
    let logs = palisade::telemetry::TracingConfig {
        log_filter: "warn,palisade::access=info".to_owned(),
        log_to_stdout: false,
        ..palisade::telemetry::TracingConfig::default()
    };
    let logger = logs.log_layer(std::io::sink).map_err(|e| e.to_string())?;
    tracing::subscriber::set_global_default(tracing_subscriber::Registry::default().with(logger))
        .map_err(|e| e.to_string())?;
    let mut config = palisade::PalisadeConfig::load().map_err(|e| e.to_string())?;
    config.telemetry.access_log = palisade::telemetry::AccessLogConfig::on();
    let stack = stack_from(config)?;
    Ok(App::Palisade(stack.apply(router), Box::new(stack.server())))
}

/// What the example server installs before it builds its stack, so that spans and metrics cost
/// what they cost once something listens: the Prometheus recorder, and a `tracing` subscriber
/// logging at `info` (text, to stderr: the harness reads the server's stdout only for its
/// address, and a pipe nobody drains would block the server once full). No exporter: the example
/// exports spans only when a collector is configured.
///
/// # Errors
///
/// A recorder or subscriber already installed.
pub fn install_production_telemetry() -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    let metrics = palisade::telemetry::PrometheusMetrics::install().map_err(|e| e.to_string())?;
    // The handle renders `/metrics`; the recorder lives as long as the process.
    std::mem::forget(metrics);
    let tracing = palisade::telemetry::TracingConfig {
        enabled: false,
        log_to_stdout: false,
        ..palisade::telemetry::TracingConfig::default()
    };
    let guard = tracing.build().map_err(|e| e.to_string())?;
    let logger = tracing
        .log_layer(std::io::stderr)
        .map_err(|e| e.to_string())?;
    let subscriber = tracing_subscriber::Registry::default()
        .with(logger)
        .with(guard.layer());
    tracing::subscriber::set_global_default(subscriber).map_err(|e| e.to_string())?;
    std::mem::forget(guard);
    Ok(())
}

/// Serves `app` on `listener` forever.
///
/// # Errors
///
/// I/O errors.
pub async fn serve(app: App, listener: TcpListener) -> Result<(), String> {
    match app {
        App::Axum(router) => axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .map_err(|e| e.to_string()),
        App::AxumNoDelay(router) => axum::serve(
            listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .map_err(|e| e.to_string()),
        App::BareHyper(work) => serve_bare_hyper(listener, work).await,
        App::AxumServerTls(router, cert, key) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| e.to_string())?;
            let listener = listener.into_std().map_err(|e| e.to_string())?;
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
            axum_server::from_tcp(listener)
                .map_err(|e| e.to_string())?
                .acceptor(acceptor)
                .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .map_err(|e| e.to_string())
        }
        App::PalisadeNoDelay(router, config) => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            palisade::serve_with_shutdown(listener, router, *config, std::future::pending())
                .await
                .map(|_report| ())
                .map_err(|e| e.to_string())
        }
        App::Palisade(router, config) => {
            palisade::serve_with_shutdown(listener, router, *config, std::future::pending())
                .await
                .map(|_report| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// hyper with a `service_fn`: `/work` does one unit of `work`, anything else is hello world.
async fn serve_bare_hyper(listener: TcpListener, work: Work) -> Result<(), String> {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let work = work.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let work = work.clone();
                async move {
                    let body = if request.uri().path() == "/work" {
                        work.run().await
                    } else {
                        "Hello, World!"
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        body.as_bytes(),
                    ))))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
