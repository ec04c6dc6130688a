//! Palisade's flagship example: a small but realistic axum JSON service, hardened with the
//! Palisade layers as they land. `cargo run --release -p production_server` runs it; the README
//! walks through what to try.
//!
//! Routes:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | hello |
//! | `GET /api/items`, `GET /api/items/{id}` | JSON catalogue |
//! | `GET /api/slow?ms=N` | sleeps `N` ms (at most 10 000): load for the limiters |
//! | `GET /api/flaky` | calls an in-process dependency that can be broken (502 while broken) |
//! | `POST /admin/dependency/fail`, `POST /admin/dependency/heal` | break and mend the dependency |
//! | `GET /admin/status` | JSON state of the dependency |

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{Router, http::StatusCode};
use tokio::net::TcpListener;
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};

mod dependency;
mod routes;

pub use dependency::{Dependency, DependencyDown};
pub use routes::MAX_SLOW_MS;

/// How long a request may take before it is answered with 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The breakable dependency behind `/api/flaky`.
    pub dependency: Dependency,
    /// When the server started.
    pub started: tokio::time::Instant,
}

impl Default for AppState {
    fn default() -> Self {
        Self {
            dependency: Dependency::new(Duration::from_millis(5)),
            started: tokio::time::Instant::now(),
        }
    }
}

/// The application with its middleware stack.
pub fn app(state: AppState) -> Router {
    routes::router(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish.
///
/// # Errors
///
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, the signal Kubernetes sends on pod deletion.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
