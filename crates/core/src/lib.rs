//! Shared vocabulary for the Palisade middleware crates, and no policy.
//!
//! Every Palisade layer speaks in these terms, so layers compose without adapters:
//!
//! - [`ResponseBody`]: the one response body type of every layer. It passes the inner body through
//!   unchanged (no boxing, no allocation) or carries a small fixed body such as a rejection, and it
//!   can hold a completion guard ([`OnBodyEnd`]) that runs exactly once when the body finishes,
//!   fails or is dropped. Permits, slots and call timings end there, not when headers are sent.
//! - [`Rejection`]: a prebuilt RFC 9457 `application/problem+json` response (503 or 429) with a
//!   `Retry-After` header computed by [`RetryAfter`]. Rejections are responses, never service
//!   errors, so layers need no `HandleErrorLayer`.
//! - [`OverloadState`]: the shared overload signal that limiters publish into and the load shedder
//!   and readiness probe read; a couple of atomic loads per read.
//! - [`Priority`]: the request criticality classes (Google SRE "Handling Overload"), stored in
//!   request extensions so every layer and handler sees the class another layer assigned.
//! - [`RouteLabel`]: the bounded route label for metrics and spans: the axum route template, or
//!   `unmatched`, never the raw path.
//! - [`Cidr`] and [`TrustedPeers`]: which callers to trust (by TCP peer, never by forwarded
//!   header), for layers that honour client-supplied ids or priorities.
//! - [`ConfigError`] and [`EnforcementMode`]: uniform configuration errors and the observe-only
//!   switch every layer offers; [`enforcement_setters!`] and [`retry_after_setters!`] write the
//!   builder methods for them, [`inner_service_accessors!`] a service's `get_ref`/`get_mut`/
//!   `into_inner`, and [`AdmitFuture`] an admission layer's response future.
//!
//! # Example: a guarded body and a rejection
//!
//! ```
//! use std::{sync::Arc, sync::atomic::{AtomicUsize, Ordering}, time::Duration};
//! use http::StatusCode;
//! use http_body_util::BodyExt;
//! use palisade_core::{BodyEnd, Rejection, ResponseBody, RetryAfter};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let finished = Arc::new(AtomicUsize::new(0));
//! let counter = finished.clone();
//! let body = ResponseBody::with_guard(
//!     http_body_util::Full::new(bytes::Bytes::from_static(b"hello")),
//!     move |end: BodyEnd| {
//!         assert_eq!(end, BodyEnd::Completed);
//!         counter.fetch_add(1, Ordering::SeqCst);
//!     },
//! );
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
//! assert_eq!(finished.load(Ordering::SeqCst), 1);
//!
//! let overloaded = Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
//!     .detail("The server is at capacity.")
//!     .retry_after(RetryAfter::new(Duration::from_millis(1500)))
//!     .build()
//!     .unwrap();
//! let response = overloaded.response::<http_body_util::Full<bytes::Bytes>, palisade_core::NoGuard>();
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers()["retry-after"], "2");
//! # }
//! ```

mod accessors;
mod body;
mod config;
#[cfg(feature = "serde")]
pub mod duration_secs;
mod events;
pub mod future;
mod guard;
mod identity;
mod overload;
mod peer;
mod priority;
mod rejection;
mod request_id;
mod route;
mod setters;
mod span;
pub mod sync;

#[doc(hidden)]
pub mod __private {
    // For `span_at!` in the crates that use it: their `tracing` may be another version's name.
    pub use tracing;
}

pub use body::ResponseBody;
pub use config::{ConfigError, EnforcementMode, check_name};
pub use events::{EventLimiter, SECURITY_TARGET};
pub use future::{AdmitFuture, Refusal};
pub use guard::{BodyEnd, NoGuard, OnBodyEnd};
pub use identity::{ClientIdentity, MissingClientIdentity, SubjectAltName};
pub use overload::{OverloadSnapshot, OverloadSource, OverloadState, RatioScale, SourceSnapshot};
pub use peer::{Cidr, PeerTrust, TrustedPeers, peer_ip};
pub use priority::{ParsePriorityError, Priority};
pub use rejection::{
    Rejection, RejectionBuilder, RejectionReason, RetryAfter, retry_after_seconds,
};
pub use request_id::{InvalidRequestId, MissingRequestId, RequestId, Scoped, with_current};
pub use route::{RouteLabel, UNMATCHED_ROUTE};
pub use span::SpanLevel;

#[cfg(all(test, palisade_loom))]
mod loom_tests;
