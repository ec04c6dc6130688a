//! Palisade: Tower middleware that makes hyper/axum HTTP/1.1 servers hold up in production.
//!
//! This umbrella crate re-exports every Palisade crate under one name, so one dependency gives the
//! whole suite. Each crate is also usable alone.
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`core`] | `palisade-core` | shared vocabulary: response body with completion guard, RFC 9457 rejections, overload state, priority, route labels |
//!
//! The layer crates (concurrency limit with hysteresis, priority load shedding, circuit breaker,
//! bulkhead, health probes, request ids, security headers, WebSocket backpressure, telemetry) are
//! added here as they land; see the repository README for the plan.
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

pub use palisade_core as core;

/// The README's Rust snippets, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
