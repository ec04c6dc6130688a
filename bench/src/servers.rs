//! The systems under test, each an HTTP/1.1 server on the same two routes:
//!
//! - `GET /hello`: a hello-world response (peak throughput);
//! - `GET /work`: bounded capacity: a pool of `workers` slots, each busy `work` per request (a
//!   sleep, so capacity does not depend on how noisy the CPU is); requests beyond the pool queue
//!   for a slot, as requests queue for a thread pool or a database connection pool.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router, error_handling::HandleErrorLayer, extract::State, http::StatusCode,
    response::IntoResponse, routing::get,
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
use tower::ServiceBuilder;

/// The systems the scenarios compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// hyper with a `service_fn`, no router, no middleware.
    BareHyper,
    /// axum with no middleware.
    BareAxum,
    /// axum + tower's `LoadShed` + `ConcurrencyLimit` (with `HandleErrorLayer` for 503s).
    TowerLimit,
    /// axum + Palisade's in-flight limiter alone: the like-for-like peer of `TowerLimit`.
    PalisadeLimiter,
    /// axum + the Palisade stack as far as it exists, in preset order: request id, security
    /// headers, in-flight limiter.
    PalisadeStack,
}

impl System {
    /// Every system.
    pub const ALL: [System; 5] = [
        Self::BareHyper,
        Self::BareAxum,
        Self::TowerLimit,
        Self::PalisadeLimiter,
        Self::PalisadeStack,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::BareHyper => "bare hyper",
            Self::BareAxum => "bare axum",
            Self::TowerLimit => "tower ConcurrencyLimit+LoadShed",
            Self::PalisadeLimiter => "palisade limiter",
            Self::PalisadeStack => "palisade stack",
        }
    }

    /// The command-line id.
    pub fn id(self) -> &'static str {
        match self {
            Self::BareHyper => "bare-hyper",
            Self::BareAxum => "bare-axum",
            Self::TowerLimit => "tower",
            Self::PalisadeLimiter => "palisade-limiter",
            Self::PalisadeStack => "palisade-stack",
        }
    }

    /// Parses a command-line id.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }
}

/// Settings shared by every system.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// Slots of the `/work` pool.
    pub workers: usize,
    /// Time per `/work` request.
    pub work: Duration,
    /// The in-flight limit of the limiting systems.
    pub max_in_flight: u32,
}

#[derive(Clone)]
struct Work {
    pool: Arc<Semaphore>,
    time: Duration,
}

impl Work {
    async fn run(&self) -> &'static str {
        let _slot = self.pool.acquire().await.expect("pool open");
        tokio::time::sleep(self.time).await;
        "done"
    }
}

/// Serves `system` on `listener` forever.
///
/// # Errors
///
/// Configuration errors of the limiter.
pub async fn serve(
    system: System,
    listener: TcpListener,
    settings: ServerSettings,
) -> Result<(), String> {
    let work = Work {
        pool: Arc::new(Semaphore::new(settings.workers)),
        time: settings.work,
    };
    if system == System::BareHyper {
        return serve_hyper(listener, work).await;
    }
    let router = Router::new()
        .route("/hello", get(|| async { "Hello, World!" }))
        .route(
            "/work",
            get(|State(work): State<Work>| async move { work.run().await }),
        )
        .with_state(work);
    let app = match system {
        System::BareHyper | System::BareAxum => router,
        System::TowerLimit => router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response()
                }))
                .load_shed()
                .concurrency_limit(settings.max_in_flight as usize),
        ),
        System::PalisadeLimiter => router.layer(limiter(settings)?),
        System::PalisadeStack => router
            .layer(limiter(settings)?)
            .layer(SecurityHeadersLayer::api())
            .layer(RequestIdLayer::new()),
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .map_err(|e| e.to_string())
}

fn limiter(settings: ServerSettings) -> Result<ConcurrencyLimitLayer, String> {
    ConcurrencyLimitLayer::builder()
        .max_in_flight(settings.max_in_flight)
        .high_water(Watermark::fraction(0.8))
        .low_water(Watermark::fraction(0.6))
        .overload_state(OverloadState::new())
        .build()
        .map_err(|e| e.to_string())
}

async fn serve_hyper(listener: TcpListener, work: Work) -> Result<(), String> {
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
