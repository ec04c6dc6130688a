//! Palisade: Tower middleware that makes hyper/axum HTTP/1.1 servers hold up in production.
//!
//! This umbrella crate re-exports every Palisade crate under one name, so one dependency gives the
//! whole suite. Each crate is also usable alone.
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`core`] | `palisade-core` | shared vocabulary: response body with completion guard, RFC 9457 rejections, overload state, priority, route labels |
//! | [`bulkhead`] | `palisade-bulkhead` | named concurrency pools per route group with a bounded, optionally priority-ordered wait |
//! | [`circuit_breaker`] | `palisade-circuit-breaker` | closed/open/half-open breaker as a server layer, client layer or guard; per service, route or key |
//! | [`concurrency_limit`] | `palisade-concurrency-limit-hysteresis` | in-flight request and connection limits with high/low water marks |
//! | [`health`] | `palisade-health` | Kubernetes probes (live, ready, startup) with cached checks and a drain sequence |
//! | [`loadshed`] | `palisade-loadshed-priority` | priority classification and graduated shedding, lowest class first |
//! | [`request_id`] | `palisade-request-id` | request ids that are safe to trust: generated, validated, propagated, logged |
//! | [`security_headers`] | `palisade-security-headers` | OWASP-grade response headers with presets, validated at build time |
//!
//! The other layer crates (WebSocket backpressure, telemetry) are added here as they land.
//!
//! # Example
//!
//! ```
//! use palisade::core::{Priority, RouteLabel};
//!
//! let request = http::Request::get("/anything").body(()).unwrap();
//! assert_eq!(Priority::of(&request), Priority::Critical);
//! assert_eq!(RouteLabel::of(&request).as_str(), "unmatched");
//! ```

pub use palisade_bulkhead as bulkhead;
pub use palisade_circuit_breaker as circuit_breaker;
pub use palisade_concurrency_limit_hysteresis as concurrency_limit;
pub use palisade_core as core;
pub use palisade_health as health;
pub use palisade_loadshed_priority as loadshed;
pub use palisade_request_id as request_id;
pub use palisade_security_headers as security_headers;

/// The README's Rust snippets, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
