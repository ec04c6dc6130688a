//! Request target hardening for axum and hyper servers, before routing.
//!
//! Path confusion attacks work because two parts of a system read one path differently: the
//! router sees `/files/..%2f..%2fetc%2fpasswd` as one segment, the `Path` extractor hands the
//! handler `../../etc/passwd`; a prefix rule denies `/admin` but not `//admin` or `/a/../admin`;
//! a backend decodes `%252e` twice. hyper passes percent-escapes through untouched and axum routes
//! on the raw path, so nothing in the stack refuses these. This layer does, in one pass over the
//! target's bytes:
//!
//! - **Refuses, never rewrites** (by default). Silently normalising `/a/../b` to `/b` hides the
//!   attack and changes what the application sees; a 400 is honest and easy to debug. Each check
//!   can be relaxed on its own, and `//` can be answered with a `308` to the merged path instead.
//! - **Checks the decoded bytes.** `.`, `%2e` and `%2E` are the same dot; `%c0%ae` is judged as
//!   the bytes it decodes to (invalid, overlong UTF-8). An allowed `%2f` still ends a segment for
//!   the dot-segment check, so it cannot hide a `..`.
//! - **Runs before any handler**: as the outermost layer of `Router::layer` (as Palisade's preset
//!   applies it), only the router's path match comes first; applied outside the router (see
//!   below), it runs before routing, and no route, extractor or fallback sees a refused request.
//! - **Answers with a 4xx problem document.** Every refusal is an RFC 9457
//!   `application/problem+json` response naming the [`Reason`] (400, 404 for deny patterns, 414
//!   for length limits; 501 with `Allow` for methods outside the allow-list), never a 500.
//!   Responses and logs never echo the offending bytes; logs show them escaped and truncated.
//! - **Costs a byte scan on clean requests**, with no allocation: percent-escapes are decoded on
//!   the fly into the checks, never into a buffer.
//! - **Observe-only mode** counts and logs what it would refuse and serves everything.
//!
//! The checks, their defaults and statuses are in [`RequestGuardConfig`]; the anchors are Envoy's
//! path normalisation options (`path_with_escaped_slashes_action = REJECT_REQUEST`) and Spring
//! Security's `StrictHttpFirewall`, with its 500-instead-of-400 and "which rule?" complaints
//! fixed.
//!
//! # Placing it outside the router
//!
//! `Router::layer` wraps each route *after* the router has chosen it: as the outermost layer
//! there, the guard still runs before every extractor, handler and inner layer, and costs
//! nothing more. To check the target before the router matches it at all, wrap the whole router
//! and hand the result to an outer router as its only service (axum boxes and clones once more
//! per request for the second router, about 2 000 instructions):
//!
//! ```
//! use axum::{Router, body::Body, extract::Path, routing::get};
//! use http::{Request, StatusCode};
//! use palisade_request_guard::RequestGuardLayer;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let app = Router::new().route("/files/{name}", get(|Path(name): Path<String>| async move { name }));
//! // The guard sees every request before `app` routes it.
//! let guard = RequestGuardLayer::builder().build().expect("a valid configuration");
//! let app = Router::new().fallback_service(guard.layer(app));
//!
//! let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
//! let ok = app.clone().oneshot(get("/files/report.pdf")).await.unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! // Without the guard, `Path` would hand the handler "../../etc/passwd".
//! let refused = app.oneshot(get("/files/..%2f..%2fetc%2fpasswd")).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
//! assert_eq!(refused.headers()["content-type"], "application/problem+json");
//! # }
//! ```
//!
//! Serve it as usual: `axum::serve(listener, app)`.
//!
//! # 405 and `Allow`
//!
//! A method outside the allow-list is unknown to the whole server: the guard answers `501 Not
//! Implemented` with an `Allow` header listing the allow-list. Whether a method suits one
//! *resource* is the router's knowledge: axum's method router answers `405 Method Not Allowed`
//! with that route's `Allow` header, and since the guard passes allowed methods through
//! unchanged, that keeps working behind it.
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_request_guard_rejected_total` | counter | `reason` ([`Reason::as_str`]), `mode` (`enforce`, or `observe_only`: counted but served) |
//!
//! A redirect of `//` counts as `double_slash`. Metric handles are registered (and described) when
//! the layer is built: install the recorder first. Each refusal is one security event on the
//! `tracing` target `palisade::security` (`palisade_core::SECURITY_TARGET`), at info level:
//! `event = "request_refused"` (or `request_refused_observed` in observe-only mode), the `reason`,
//! the `status`, the method, the path (escaped, cut after 128 bytes, never the query) and the
//! `request_id`. Scanners send these all day: `RUST_LOG=palisade::security=warn` silences them,
//! and the metric stays the signal.

mod config;
mod deny;
mod escape;
mod future;
mod guard;
mod layer;
mod method;
pub mod metrics;
mod path;
mod reason;
mod service;
mod swar;
mod target;

pub use config::{Action, MAX_URI_LENGTH, RequestGuardConfig};
pub use deny::DenyPattern;
pub use future::{Refused, ResponseFuture};
pub use layer::{RequestGuardBuilder, RequestGuardLayer};
pub use path::DoubleSlash;
pub use reason::Reason;
pub use service::RequestGuard;
pub use target::Verdict;

/// The README's example, compiled as a doctest so that it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
