//! Request ids that are safe to trust and easy to follow.
//!
//! Every request, and every log line and span about it, carries one id. [`RequestIdLayer`] is a
//! Tower layer for axum/hyper servers that:
//!
//! 1. **reads** the incoming id from the configured header (default `x-request-id`) or, when it
//!    is absent, from configured aliases such as `x-correlation-id`, in order;
//! 2. **keeps** it only when it is valid (every byte in the charset, default `[A-Za-z0-9._:-]`,
//!    and at most `max_length` bytes, default 128; a repeated header is invalid) and the
//!    [`TrustPolicy`] believes the peer (always, never, or only peers in trusted CIDR ranges);
//!    otherwise **generates** a fresh id: UUID v7 by default, UUID v4, or your [`MakeRequestId`];
//! 3. puts the id **on the request**: the main header (replacing an invalid or untrusted value,
//!    and any alias that carried one), the extensions (a [`RequestId`], which handlers take as an
//!    axum extractor), and the [current request id](RequestId::current) for outgoing calls;
//! 4. runs the inner service inside a `request` **span** with field `request_id`, so every log
//!    line inside the request carries it, and records it on the span current when the request
//!    entered (see [Tracing](#tracing));
//! 5. sets the id header **on the response**: every response, including rejections that layers
//!    inside this one produce (`palisade_core::Rejection`: overload, open breakers, timeouts).
//!
//! Invalid input is never echoed back or logged raw: when an id is replaced, the debug event
//! `incoming request id replaced` carries only the reason and the length.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use palisade_request_id::{RequestId, RequestIdLayer};
//! use tower::ServiceExt;
//!
//! async fn handler(id: RequestId) -> String {
//!     tracing::info!("handling"); // logged with request_id=<id>
//!     format!("request {id}")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = RequestIdLayer::builder()
//!     .header("x-request-id") // the default; `.alias(..)` reads and echoes more names
//!     .build()
//!     .expect("a valid configuration");
//! let app = Router::new().route("/", get(handler)).layer(layer);
//!
//! // No incoming id: a fresh UUID v7, on the response and in the handler.
//! let response = app.clone().oneshot(http::Request::new(axum::body::Body::empty())).await.unwrap();
//! let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
//! assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
//!
//! // A valid incoming id is kept; an invalid one is replaced.
//! let kept = http::Request::builder().header("x-request-id", "trace-42").body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(kept).await.unwrap().headers()["x-request-id"], "trace-42");
//! let hostile = http::Request::builder().header("x-request-id", "a".repeat(10_000)).body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.oneshot(hostile).await.unwrap().headers()["x-request-id"].len(), 36);
//! # }
//! ```
//!
//! Configured, or from a [`RequestIdConfig`] (which deserializes with the `serde` feature):
//!
//! ```
//! use palisade_request_id::{IdFormat, RequestIdLayer};
//!
//! let layer = RequestIdLayer::builder()
//!     .alias("x-correlation-id")
//!     .format(IdFormat::UuidV7)
//!     .trusted_peers(["10.0.0.0/8", "fd00::/8"]) // the load balancer, the mesh
//!     .build()?;
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! Configuration errors are [`ConfigError`](palisade_core::ConfigError)s naming the key
//! (`request_id.trusted_peers[1]: "10.0.0.1/8" has host bits set: did you mean 10.0.0.0/8?`);
//! nothing panics on bad configuration or bad input.
//!
//! # Placement
//!
//! Put the layer outermost (in axum, the last `.layer(...)`), as the Palisade preset stack does:
//! then every response, including rejections from the limiters, carries the id, and every span
//! and log line of the layers inside carries it too. Responses produced outside the layer (a
//! connection refused by a listener-level limit) cannot carry it.
//!
//! # Generation
//!
//! `uuid`'s `Uuid::now_v7()` takes a process-wide `Mutex` for its monotonic counter, and without
//! the `fast-rng` feature `now_v7()` and `new_v4()` make a `getrandom` system call per UUID. This
//! crate keeps a per-thread `ChaCha12` generator seeded once from the operating system (`rand`'s
//! `StdRng`) plus a per-thread timestamp and 12-bit counter, and assembles UUIDs with
//! `uuid::Builder`: no lock, no system call, no shared cache line per id; ids stay unguessable.
//! UUID v7 ids sort by millisecond; within a millisecond, ids made on one worker thread increase.
//!
//! # Trust
//!
//! Validation makes any id safe to log; trust decides whether a client may *choose* it.
//! [`TrustPolicy::Always`] (default) keeps every valid id, which is what correlation across
//! services needs. [`TrustPolicy::TrustedPeers`] keeps ids only from peers in the configured
//! [`Cidr`] ranges, judged by the TCP peer address from axum's `ConnectInfo<SocketAddr>` (serve
//! with `into_make_service_with_connect_info::<SocketAddr>()`; without it no peer is trusted and
//! the layer warns once). `X-Forwarded-For` is deliberately not consulted: it is spoofable.
//! [`TrustPolicy::Never`] gives every request a fresh id.
//!
//! # Observe-only mode
//!
//! With [`EnforcementMode::ObserveOnly`](palisade_core::EnforcementMode), the layer decides and
//! counts as in enforce mode but never rewrites a header the client or the application set:
//!
//! - the request reaches the inner service with its incoming headers exactly as they arrived
//!   (a missing id header is still added, since adding one replaces nothing);
//! - a valid id from an untrusted peer is kept (and counted as `untrusted`);
//! - a response header set by the inner service is left as is (enforce mode overwrites it).
//!
//! What observe-only does not relax is safety: an invalid incoming id is still never the
//! request's [`RequestId`], so it never reaches the span, the logs, the forwarded calls or a
//! response header this layer sets; a fresh id stands in for it there. Operators use the mode to
//! see, from the metrics, how many ids enforce mode would replace before turning it on.
//!
//! # Tracing
//!
//! The layer opens a span named `request` (target `palisade_request_id`, level
//! [`SpanLevel::Info`] by default, configurable or off) with field `request_id`, and polls the
//! inner service inside it. How it composes with a tracing layer such as tower-http's
//! `TraceLayer`:
//!
//! - **Request id outside, trace layer inside** (recommended, the preset order): the trace
//!   layer's span is a child of `request`, so all its events (`on_request`, `on_response`,
//!   `on_failure`) and everything in the handler carry `request_id`. In axum, the request id
//!   layer is added after the trace layer:
//!
//!   ```
//!   # use axum::{Router, routing::get};
//!   # use palisade_request_id::RequestIdLayer;
//!   use tower_http::trace::TraceLayer;
//!   let app: Router = Router::new()
//!       .route("/", get(|| async { "hi" }))
//!       .layer(TraceLayer::new_for_http()) // inner
//!       .layer(RequestIdLayer::new()); // outer
//!   ```
//!
//! - **Trace layer outside**: its span exists before the id does, and its closing events run
//!   outside `request`. Declare an empty `request_id` field in its span; the layer records the id
//!   into the span that is current when the request reaches it
//!   ([`RequestIdConfig::record_on_current_span`], on by default):
//!
//!   ```
//!   # use axum::{Router, routing::get};
//!   # use palisade_request_id::RequestIdLayer;
//!   use tower_http::trace::TraceLayer;
//!   let app: Router = Router::new()
//!       .route("/", get(|| async { "hi" }))
//!       .layer(RequestIdLayer::new())
//!       .layer(TraceLayer::new_for_http().make_span_with(|req: &http::Request<_>| {
//!           tracing::info_span!("http", method = %req.method(), uri = %req.uri(),
//!                               request_id = tracing::field::Empty)
//!       }));
//!   ```
//!
//! Work spawned onto other tasks leaves both the span and the current id behind: use
//! `tracing::Instrument::in_current_span` and [`RequestId::scope`].
//!
//! # Outgoing calls
//!
//! [`ForwardRequestIdLayer`] on an HTTP client copies the id onto outgoing requests: from the
//! request's extensions, else from the [current request id](RequestId::current), which the
//! server layer sets while it polls the handler (a per-task value, like the current span). So a
//! handler that calls another service through such a client forwards its id with no plumbing.
//!
//! # Metrics
//!
//! Through the `metrics` facade (described with `describe_counter!`; see [`mod@metrics`]):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_request_id_generated_total` | counter | none | requests that arrived without an id |
//! | `palisade_request_id_replaced_total` | counter | `reason` = `invalid` \| `untrusted` | incoming ids replaced (observe-only: that would be replaced) |
//!
//! # Cost
//!
//! The layer adds no body wrapper and no boxing. Per request: one extension insert, one header
//! insert on the response, and for a fresh id one allocation for its header value; the span costs
//! nothing when its level is disabled. `benches/request_id.rs` compares it with tower-http's
//! `SetRequestIdLayer` + `PropagateRequestIdLayer`.

mod client;
mod config;
mod future;
mod generator;

mod layer;
pub mod metrics;
mod service;
mod trust;
mod validation;

pub use client::{ForwardRequestId, ForwardRequestIdLayer};
pub use config::{DEFAULT_HEADER, RequestIdBuilder, RequestIdConfig};
pub use future::ResponseFuture;
pub use generator::{IdFormat, MakeRequestId};
pub use layer::RequestIdLayer;
pub use palisade_core::SpanLevel;
pub use palisade_core::{InvalidRequestId, MissingRequestId, RequestId, Scoped};
pub use service::RequestIdService;
pub use trust::{Cidr, TrustPolicy};
pub use validation::{Charset, DEFAULT_CHARSET, DEFAULT_MAX_LENGTH, MAX_MAX_LENGTH, Validator};
