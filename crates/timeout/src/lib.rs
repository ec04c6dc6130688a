//! A request timeout for axum and hyper servers that costs almost nothing when requests are
//! fast.
//!
//! A request whose response has not started within the timeout is answered, by default, `503`
//! with an RFC 9457 `application/problem+json` body (reason `timeout`), and its handler future is
//! dropped, which cancels the work at its next `.await`. What differs from tower-http's
//! `TimeoutLayer`:
//!
//! - **No timer for requests answered at once.** tower-http creates a `Sleep` in `call` and polls
//!   it before the inner future, so every request registers a timer in the runtime's wheel and
//!   removes it again. This layer polls the inner future first and arms a timer only when that
//!   future waits; the deadline still counts from `call`. For a handler that answers in its first
//!   poll the cost is one clock read: in Palisade's preset, under callgrind, 215 instructions per
//!   request against tower-http's 803 (see the crate's README for the benchmark).
//! - **A ready response wins.** When the inner future completes in the poll that would time it
//!   out, its response is sent.
//! - **A real answer.** The problem document names the reason, carries `Cache-Control: no-store`,
//!   and the response's extensions hold a `palisade_core::RejectionReason` (`timeout`) that
//!   outer layers (access logs, metrics) can read. The status is configurable (504 behind a
//!   gateway); tower-http's default is 408, which tells the client it was too slow.
//! - **Observe-only mode** counts and logs requests that overrun, and lets them finish: measure
//!   what a timeout would cut before enforcing it.
//! - **Metrics and logs.** Every timeout is counted; at most ten a second are logged, the next
//!   one logged says how many were left out.
//!
//! The timeout covers the response's start, not its body: a streaming body is the handler's to
//! bound (tower-http's `ResponseBodyTimeoutLayer` does that per frame).
//!
//! # Panics
//!
//! Timers need a Tokio runtime with its time driver (`#[tokio::main]` and the multi-thread
//! builder's `enable_all` have it). On a runtime without one, the first request through the layer
//! panics, as with tower-http's timeout, rather than the first request that waits.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use palisade_timeout::TimeoutLayer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let app = Router::new()
//!     .route("/fast", get(|| async { "done" }))
//!     .route("/slow", get(|| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!         "too late"
//!     }))
//!     .layer(TimeoutLayer::new(Duration::from_secs(10)).expect("a valid timeout"));
//!
//! let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
//! let fast = app.clone().oneshot(get("/fast")).await.unwrap();
//! assert_eq!(fast.status(), StatusCode::OK);
//!
//! let slow = app.oneshot(get("/slow")).await.unwrap();
//! assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(slow.headers()["content-type"], "application/problem+json");
//! # }
//! ```
//!
//! Serve it as usual: `axum::serve(listener, app)`. With a configuration file, deserialize a
//! [`TimeoutConfig`] (feature `serde`; durations in seconds) and build with
//! [`TimeoutLayer::from_config`].
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_timeout_expired_total` | counter | `mode` (`enforce`: answered; `observe_only`: counted and left to finish) |
//!
//! The metric handle is registered (and described) when the layer is built: install the recorder
//! first. Each timeout is one `warn` event (`event = "request_timed_out"`, or
//! `request_timed_out_observed` in observe-only mode, with `timeout_ms`), inside the request's
//! span, so the request id and route of the span are on it.

mod config;
mod deadline;
mod future;
mod layer;
pub mod metrics;
mod service;

pub use config::{MAX_TIMEOUT, TimeoutConfig};
pub use future::ResponseFuture;
pub use layer::{TimeoutBuilder, TimeoutLayer};
pub use service::Timeout;

/// The README's example, compiled as a doctest so that it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
