//! Circuit breakers for axum/hyper servers, tower clients and plain futures: count and time
//! windows, failure and slow-call rates, exact half-open probes, `503` + `Retry-After`, and a
//! closed state that takes no lock and allocates nothing.
//!
//! A failing dependency (a database, another service) makes every request that needs it slow
//! and then fail, while it ties up workers, connections and memory that healthy requests need. A
//! circuit breaker watches the outcomes of the calls to the dependency; when too many fail (or
//! are too slow) it *opens* and refuses calls at once for a while, so the service answers fast
//! and the dependency gets room to recover; then it lets a few *probe* calls through
//! (*half-open*) and *closes* again when they succeed.
//!
//! # States
//!
//! | state | calls | leaves it |
//! |---|---|---|
//! | [`State::Closed`] | admitted and recorded | → open when a threshold is crossed |
//! | [`State::Open`] | rejected, with the remaining open time | → half-open when the open wait ends (on the next call, or by timer) |
//! | [`State::HalfOpen`] | exactly `permitted_calls_in_half_open` concurrent probes | → closed after `success_threshold` successes; → open on a failure or after `max_wait_in_half_open` |
//! | [`State::Disabled`] | admitted, nothing recorded | by hand |
//! | [`State::ForcedOpen`] | rejected | by hand |
//! | [`State::MetricsOnly`] | admitted and recorded; logs when it would open | by hand |
//!
//! The breaker opens when, over its window of calls ([`SlidingWindow`]: the last N calls, or the
//! last N seconds in buckets) holding at least `minimum_calls`, the failure rate or the slow-call
//! rate reaches its threshold, or after `consecutive_failures` failures in a row. The open wait
//! can grow exponentially with jitter after each failed recovery, up to a cap. The defaults and
//! their mapping from the original plan (failure threshold 5, success threshold 3, reset timeout
//! 30 s) are in [`CircuitBreakerConfig`].
//!
//! # Three ways to use it
//!
//! **A server layer**, on the routes that need the dependency. An open breaker answers
//! `503 Service Unavailable` with `Retry-After` equal to its remaining open time (whole
//! seconds, rounded up) and an RFC 9457 problem body (`"reason": "circuit_open"`), without
//! calling the handler:
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use palisade_circuit_breaker::{Breaker, CircuitBreakerLayer};
//!
//! # fn main() -> Result<(), palisade_core::ConfigError> {
//! // One breaker per route template, named "api:/orders/{id}", ...
//! let breakers = CircuitBreakerLayer::per_route(
//!     Breaker::builder()
//!         .name("api")
//!         .wait_in_open(Duration::from_secs(30)),
//! )?;
//! let registry = breakers.registry().cloned(); // to read or force their states later
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "order from the database" }))
//!     .route("/payments", get(|| async { "payment from the payment service" }))
//!     .route_layer(breakers)
//!     // Added after `route_layer`: not behind a breaker.
//!     .route("/health", get(|| async { "ok" }));
//! # let _ = (app, registry); Ok(()) }
//! ```
//!
//! **A guard** around any future, for dependencies that are not tower services (a Redis call, a
//! database query); a rejection is a typed error carrying the remaining open time:
//!
//! ```
//! use palisade_circuit_breaker::{BreakerError, Breaker};
//!
//! # async fn query(_: &str) -> Result<u64, std::io::Error> { Ok(7) }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let database = Breaker::builder().name("database").build()?;
//! match database.call(query("SELECT count(*) FROM orders")).await {
//!     Ok(count) => println!("{count} orders"),
//!     Err(BreakerError::Rejected(rejected)) => {
//!         println!("database breaker open, retry in {:?}", rejected.retry_in());
//!     }
//!     Err(BreakerError::Inner(error)) => println!("query failed: {error}"),
//! }
//! # Ok(()) }
//! ```
//!
//! **A client layer** around any tower service ([`CircuitBreakerLayer::client`]) or an HTTP
//! client such as hyper's ([`CircuitBreakerLayer::http_client`], which times calls until the
//! response body ends), here with one breaker per upstream host:
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use palisade_circuit_breaker::{Breaker, CircuitBreakerLayer};
//! use tower::Layer;
//!
//! # fn main() -> Result<(), palisade_core::ConfigError> {
//! let per_host = CircuitBreakerLayer::per_key(
//!     Breaker::builder().name("upstream"),
//!     |request: &Request<Full<Bytes>>| request.uri().host(),
//! )?;
//! let client = per_host
//!     .http_client()
//!     .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
//! // `client` is a tower service: its errors are `BreakerError::Rejected` (not sent) or
//! // `BreakerError::Inner` (the client's own error).
//! # let _ = client; Ok(()) }
//! ```
//!
//! The same [`Breaker`] can back a layer ([`CircuitBreakerLayer::new`]) and guard calls,
//! when a route and a background job share one dependency.
//!
//! # What counts as a failure
//!
//! Layers use [`HttpClassifier`] by default: 5xx responses and service errors (connection
//! errors, timeouts) are failures, everything else, 4xx included, succeeds; single statuses can
//! be overridden, including to [`Outcome::Ignore`]. Any `Fn(&Result<Response, Error>) ->
//! Outcome` closure works too ([`CircuitBreakerLayer::with_classifier`],
//! [`Breaker::call_with`]). A call lasts until its response body ends (or fails: a
//! failure; or is dropped: the status decides), so a slow stream is a slow call; a request
//! cancelled before its response is ignored.
//!
//! # Scopes
//!
//! The state is created once, when the layer is built, and shared by every service the layer
//! makes, on every route and connection ([`Global`]: one breaker). [`PerRoute`] keys breakers by
//! axum's route template (never the raw path), [`PerKey`] by a closure over the request. Keyed
//! breakers live in a bounded [`BreakerRegistry`] (`max_breakers`, default 1024) that evicts
//! breakers idle for `idle_timeout` when it needs room; beyond that, keys share an overflow
//! breaker, so a client inventing keys cannot grow memory or metric series.
//!
//! # Quiet routes
//!
//! A rate over a time window needs calls: with resilience4j's time-based windows a route that
//! sees fewer than `minimumNumberOfCalls` per window never opens, however often it fails
//! (resilience4j#747). Here, `consecutive_failures` (default 5) is counted across windows, so a
//! quiet route whose every call fails opens after 5 calls whatever its traffic; and
//! `minimum_calls` (default 5) is small enough to be reached by modest traffic. For a time window
//! on a route with very little traffic, lower `minimum_calls` to what the window can hold.
//!
//! # Operations
//!
//! [`Breaker`] is also the handle: [`Breaker::snapshot`] (state, window figures,
//! remaining time, probes), [`Breaker::force_open`], [`Breaker::force_closed`],
//! [`Breaker::disable`], [`Breaker::metrics_only`], [`Breaker::reset`] and
//! [`Breaker::trip`]. [`CircuitBreakerBuilder::on_state_change`] registers callbacks,
//! and every transition is logged once with `tracing` (a warning when a breaker opens).
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_circuit_breaker_state` (0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, 5 metrics only) | gauge | `breaker` |
//! | `palisade_circuit_breaker_transitions_total` | counter | `breaker`, `from`, `to` |
//! | `palisade_circuit_breaker_calls_total` | counter | `breaker`, `outcome` (`success`, `failure`, `slow`, `rejected`, `ignored`) |
//!
//! A breaker registers its gauge and call counters when it is created (install the recorder
//! first); a transition counter is registered on the first transition of its kind.
//!
//! # Cost
//!
//! Admission in the closed state is one atomic load. Recording a call takes no lock and
//! allocates nothing: with a count window, a success in a window of successes writes nothing at
//! all, so concurrent calls do not contend; other outcomes update the window with one or two
//! atomic read-modify-writes. A time window reads the clock once per call. The half-open state
//! admits probes with one compare-and-swap on the state word, exactly up to the permitted
//! number under any interleaving (model-checked with loom in `src/loom_tests.rs`).

mod breaker;
mod classify;
mod config;
mod error;
mod future;
mod layer;
mod machine;
pub mod metrics;
mod registry;
mod scope;
mod service;
mod sync;
#[doc(hidden)]
mod window;

pub use breaker::{
    Breaker, BreakerSnapshot, CallGuard, CircuitBreakerBuilder, Permit, StateChange,
};
pub use classify::{Classify, HttpClassifier, Outcome, ResultClassifier};
pub use config::{
    CircuitBreakerConfig, MAX_OPEN_WAIT, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS, SlidingWindow,
};
pub use error::{BreakerError, Rejected};
pub use future::{ClientFuture, HttpClientFuture, ResponseFuture};
pub use layer::{CircuitBreakerClientLayer, CircuitBreakerHttpClientLayer, CircuitBreakerLayer};
pub use machine::{Cause, State};
pub use registry::{BreakerRegistry, MAX_KEY_LEN, OVERFLOW_KEY};
pub use scope::{Global, PerKey, PerRoute, ScopeKey};
pub use service::{CircuitBreaker, CircuitBreakerClient, CircuitBreakerHttpClient};

#[cfg(all(test, palisade_loom))]
mod loom_tests;
