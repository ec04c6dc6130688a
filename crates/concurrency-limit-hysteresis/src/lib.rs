//! In-flight request and connection limits with hysteresis, for axum and hyper servers.
//!
//! Without limits a server under a spike takes on more work than it can finish, memory grows, and
//! every request slows until the process falls over. This crate caps the work a server accepts and
//! answers the rest fast with `503 Service Unavailable`, `Retry-After` and an RFC 9457 problem
//! body, so clients back off and the requests already admitted finish at their normal speed.
//!
//! # Requests: [`ConcurrencyLimitLayer`]
//!
//! - **Hysteresis.** The limiter *accepts* until requests in flight reach the high-water mark, then
//!   *sheds* (rejects new requests) until they fall back to the low-water mark. A limit with a
//!   single threshold flaps on and off at the boundary; the band between the marks gives the
//!   server time to recover. An optional minimum dwell time keeps it shedding for at least that
//!   long once it starts.
//! - **Critical reserve.** While shedding, requests whose [`Priority`](palisade_core::Priority) is
//!   `CriticalPlus` may still use the headroom between the high-water mark and the hard maximum,
//!   so critical traffic survives a spike. The hard maximum is never exceeded.
//! - **Permits last until the body ends.** A slot is released when the response body has been
//!   sent, fails, or is dropped (client gone), not when headers are returned, so a streaming
//!   response counts for as long as it streams.
//! - **Shared state.** The state is created once when the layer is built; every clone, route and
//!   connection shares it (tower's `ConcurrencyLimitLayer` makes a semaphore per `layer()` call,
//!   which under axum's `route_layer` limits nothing: axum#2582).
//! - **Admission in `call`, rejection as a response.** No queueing behind `poll_ready`, no
//!   `HandleErrorLayer`.
//! - **Overload signal.** Utilisation and the shedding flag are published into
//!   [`OverloadState`](palisade_core::OverloadState) for the load shedder and readiness probe.
//! - **Observe-only mode.** Counts and logs what it would reject, and serves everything.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, Watermark};
//!
//! let limit = ConcurrencyLimitLayer::builder()
//!     .max_in_flight(500)
//!     .high_water(Watermark::fraction(0.8)) // shed from 400 in flight...
//!     .low_water(Watermark::fraction(0.6)) // ...until back down to 300
//!     .retry_after(Duration::from_secs(2))
//!     .build()?;
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(limit);
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! # Connections: [`ConnectionLimitListener`]
//!
//! Wraps any `axum::serve::Listener` and counts open connections the same way (default 10 000, high
//! 0.8, low 0.6). Above the mark it either answers each new connection with a canned
//! `HTTP/1.1 503` + `Retry-After` + `Connection: close` ([`OverLimitPolicy::RespondServiceUnavailable`],
//! the default) or stops accepting until the count falls to the low-water mark
//! ([`OverLimitPolicy::PauseAccepting`]), leaving new connections in the kernel backlog.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{Router, routing::get, serve::ListenerExt};
//! use palisade_concurrency_limit_hysteresis::{ConnectionLimitConfig, ConnectionLimitListener};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let listener = ConnectionLimitListener::new(tcp, ConnectionLimitConfig::default())?
//!     // `tap_io` also makes `ConnectInfo<SocketAddr>` available (see the listener's docs).
//!     .tap_io(|io| { let _ = io.get_mut().set_nodelay(true); });
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_concurrency_in_flight` | gauge | `limiter` |
//! | `palisade_concurrency_state` (0 accepting, 1 shedding) | gauge | `limiter` |
//! | `palisade_concurrency_rejected_total` | counter | `limiter`, `reason` (`shedding`, `at_maximum`), `mode` (`enforce`, `observe_only`) |
//! | `palisade_concurrency_limit` (the marks, constant) | gauge | `limiter`, `bound` (`max`, `high_water`, `low_water`) |
//! | `palisade_connections_open` | gauge | `listener` |
//! | `palisade_connections_state` (0 accepting, 1 refusing) | gauge | `listener` |
//! | `palisade_connections_rejected_total` | counter | `listener`, `reason`, `mode` |
//! | `palisade_connections_limit` (the marks, constant) | gauge | `listener`, `bound` |
//!
//! Metric handles are registered when a limiter is built: install the recorder (for example the
//! Prometheus exporter) first. Each state change is logged once with `tracing` (a warning when
//! shedding starts, info when it stops), never each rejection.

mod config;
mod future;
mod hysteresis;
mod layer;
mod limiter;
mod listener;
pub mod metrics;
mod service;

pub use config::{
    ConcurrencyLimitConfig, ConnectionLimitConfig, MAX_LIMIT, OverLimitPolicy, Thresholds,
    Watermark,
};
pub use future::{AtLimit, ResponseFuture};
pub use layer::{ConcurrencyLimitBuilder, ConcurrencyLimitLayer};
pub use limiter::{LimiterHandle, Permit};
pub use listener::{ConnectionLimitListener, LimitedIo};
pub use service::ConcurrencyLimit;

#[cfg(all(test, palisade_loom))]
mod loom_tests;
