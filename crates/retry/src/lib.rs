//! Budgeted retries with backoff for outgoing calls: a tower layer for HTTP clients (hyper's,
//! reqwest through tower, any `Service<http::Request<B>>`) and a guard for any async operation.
//!
//! A retry turns one failure into another request to a dependency that is already failing.
//! Retries done naively (every error, every method, at once, without limit) multiply the load on
//! a struggling upstream by the number of attempts, keep it down once it falls (retries are the
//! most common sustaining cause of metastable failures), and repeat requests that were not safe
//! to repeat. This crate retries only what is safe and only as much as the upstream can take:
//!
//! - **Only safe requests.** Idempotent methods (RFC 9110: `GET`, `HEAD`, `PUT`, `DELETE`,
//!   `OPTIONS`, `TRACE`) or requests carrying an `Idempotency-Key`; a `POST` is sent once.
//! - **Only failures another attempt may fix.** Transport errors (classified by a closure;
//!   every error by default), 429, 502, 503, 504 and the statuses you list; never other 4xx
//!   (400, 403, 404, 416 say the request is wrong, and fail fast).
//! - **Backoff with full jitter.** The sleep before retry `n` is uniform in
//!   `[0, min(cap, base * 2^(n-1)))` (defaults 100 ms and 400 ms), so clients that failed
//!   together do not come back together.
//! - **`Retry-After` honoured.** Delta-seconds or HTTP-date; a wait longer than
//!   `max_retry_after` or past the deadline ends the retries and returns the response at once.
//! - **Limits.** At most `max_attempts` (3) attempts, an overall `deadline` (2 s) that no attempt
//!   starts or sleep ends after, and an optional per-attempt timeout.
//! - **A retry budget.** Every clone shares one [`RetryBudget`] (optionally one per upstream
//!   host): failed retries may add at most 20 % of the requests plus 10 per second over 10 s (a
//!   retry that succeeds gives its retry back). When it is spent, failures are returned at once. The accounting is exact for fractional ratios
//!   (tower's `TpsBudget` allows 100 % retries for a ratio of 0.6: tower#857).
//! - **Replayable bodies.** Bodies up to 64 KiB are buffered once and replayed; larger ones are
//!   streamed once and not retried ([`ReplayBody`]).
//! - **Hedging (opt-in).** A second attempt after `hedge_after` if the first is slow; the first
//!   useful answer wins, the other is cancelled; hedges come out of the same budget.
//! - **Observe-only mode** counts what would be retried (and what the budget would refuse)
//!   without retrying.
//!
//! # A hyper client with retries
//!
//! The inner client takes [`ReplayBody<B>`](ReplayBody) where callers send `B`:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use palisade_retry::{ReplayBody, RetryLayer};
//! use tower::Layer;
//!
//! # fn main() -> Result<(), palisade_core::ConfigError> {
//! let retry = RetryLayer::builder()
//!     .name("payments")
//!     .max_attempts(3)
//!     .deadline(Duration::from_secs(2))
//!     .attempt_timeout(Duration::from_millis(500))
//!     .build()?;
//! let client = retry.layer(
//!     Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>(),
//! );
//! // `client` is a `Service<Request<Full<Bytes>>>` whose errors are `RetryError<hyper_util::..::Error>`.
//! # let _ = client; Ok(()) }
//! ```
//!
//! # What a retry looks like
//!
//! Any tower service works; here one that answers 503 once, on a paused clock:
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use bytes::Bytes;
//! use palisade_retry::{ReplayBody, RetryLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! let upstream = service_fn(move |_: Request<ReplayBody<Empty<Bytes>>>| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let status = if n == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
//!     }
//! });
//! let client = RetryLayer::new().layer(upstream);
//! let response = client.oneshot(Request::get("http://upstream/").body(Empty::new()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # }
//! ```
//!
//! # Behind a circuit breaker
//!
//! An open breaker refuses every attempt until it closes, so a refusal must stop the retries at
//! once. Put the breaker inside the retry layer (each attempt is a call the breaker sees) and
//! classify its rejection as not retryable:
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::{Client, Error}, rt::TokioExecutor};
//! use palisade_circuit_breaker::{BreakerError, CircuitBreakerConfig, CircuitBreakerLayer};
//! use palisade_retry::{ReplayBody, RetryLayer};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), palisade_core::ConfigError> {
//! let breaker = CircuitBreakerLayer::from_config(CircuitBreakerConfig::default())?;
//! let client = ServiceBuilder::new()
//!     .layer(
//!         RetryLayer::builder()
//!             .name("payments")
//!             .classify_errors(|e: &BreakerError<Error>| !e.is_rejected())
//!             .build()?,
//!     )
//!     .layer(breaker.http_client())
//!     .service(Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>());
//! # let _ = client; Ok(()) }
//! ```
//!
//! # Outside tower
//!
//! [`Retrier`] runs any async closure with the same backoff, deadline, budget and metrics;
//! [`RetryLayer::retrier`] gives one that shares the layer's budget.
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_retry_attempts_total` (one per call, by how it ended) | counter | `client`, `outcome` (`first_try_ok`, `retry_ok`, `exhausted`, `budget_exhausted`, `not_retryable`; observe-only also `retryable`: would have retried), `mode` |
//! | `palisade_retry_budget_tokens` (retries the budget allows now) | gauge | `client` |
//!
//! Metrics are described and their handles registered when a layer or retrier is built: install
//! the recorder first. Each attempt runs in a `retry_attempt` tracing span (fields `client`,
//! `attempt`); each retry and hedge is a debug event with its delay.

mod attempt;
mod backoff;
mod body;
mod budget;
mod config;
mod error;
mod future;
mod hedge;
mod layer;
pub mod metrics;
mod policy;
mod retry_after;
mod run;
mod service;

pub use backoff::{Backoff, RandomSource};
pub use body::ReplayBody;
pub use budget::RetryBudget;
pub use config::{
    BudgetConfig, BudgetScope, DEFAULT_RETRY_STATUSES, MAX_ATTEMPTS, MAX_RATIO,
    RETRYABLE_CLIENT_ERRORS, RetryConfig,
};
pub use error::RetryError;
pub use future::ResponseFuture;
pub use layer::{RetryBuilder, RetryLayer};
pub use policy::{AllErrors, ClassifyError, IDEMPOTENCY_KEY, is_idempotent};
pub use retry_after::parse_retry_after;
pub use run::{Retrier, RetrierBuilder};
pub use service::Retry;
