//! Priority-aware, graduated load shedding for axum and hyper servers.
//!
//! When demand exceeds capacity, a good server sheds the least important work first and keeps its
//! critical traffic whole (Google SRE, "Handling Overload"). tower's `LoadShed` sheds blindly and
//! only through `poll_ready`; this layer classifies every request into a
//! [`Priority`](palisade_core::Priority) and sheds by class in `call`, answering the core 503 +
//! `Retry-After` + problem+json naming the class.
//!
//! # Classification
//!
//! First match wins: critical paths (health probes by default: never shed), route rules (exact
//! path, prefix, or axum route template), the priority header (default `x-priority`), a custom
//! closure, then the default class (`Critical`). The class is stored in request extensions, so
//! later layers (the concurrency limiter's critical reserve) and handlers (`Priority` is an axum
//! extractor) see it, and [`current_priority`] / [`PropagatePriorityLayer`] carry it to outgoing
//! requests.
//!
//! **Trust.** A priority header must not let an untrusted client jump the queue. By default
//! ([`HeaderTrust::LowerOnly`]) anyone may *lower* their class, nobody may raise it; trusted peers
//! (CIDR ranges, from `ConnectInfo`) or a shared-secret header can be allowed to raise it. Unknown,
//! repeated or malformed values are ignored.
//!
//! # Shedding
//!
//! The overload level is the worse of the shared [`OverloadState`](palisade_core::OverloadState)
//! (published by the concurrency limiter) and this layer's own in-flight count over
//! `max_queue_depth`. From `threshold` (0.5) to `ceiling` (0.8, the limiter's default high-water
//! mark) the shed probability rises, class by class: `Sheddable` first (from `shed_percentage`,
//! 10%, to 100%), then `SheddablePlus`, then `Critical`; `CriticalPlus` is never shed here (see
//! [`shed_probability`]). The random source is injectable for deterministic tests.
//!
//! `Critical` is shed only once the level has *stayed* in its part of the band for
//! `critical_sustain` (100 ms; a limiter that reports "overloaded" counts at once). Under a
//! steady overload the in-flight level is a sawtooth: completions drop it, admissions push it
//! back up, and its peaks reach `Critical`'s part for a few milliseconds even while shedding the
//! lower classes keeps the server within capacity. As in `CoDel`, a queue that drains within the
//! interval is a burst to absorb, and one that stays is overload that shedding every lower class
//! did not relieve. The lower classes are shed on the instantaneous level, so the peaks stay
//! bounded. The clock is read only while the level is in `Critical`'s part.
//!
//! **Where it goes.** Put this layer *outside* the concurrency limiter (added after it with
//! `Router::layer`): it then classifies before the limiter, so the limiter's critical reserve
//! sees the class, and it sheds the low classes before the limiter reaches its high-water mark.
//!
//! ```
//! use axum::{Router, routing::get};
//! use palisade_concurrency_limit_hysteresis::ConcurrencyLimitLayer;
//! use palisade_core::Priority;
//! use palisade_loadshed_priority::{LoadShedLayer, PathMatch};
//!
//! let shed = LoadShedLayer::builder()
//!     .route(PathMatch::Prefix("/api/reports/".into()), Priority::Sheddable)
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/api/reports/daily", get(|| async { "report" }))
//!     .route("/api/checkout", get(|priority: Priority| async move { format!("{priority}") }))
//!     .layer(ConcurrencyLimitLayer::builder().max_in_flight(200).build()?)
//!     .layer(shed);
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! # Observe-only, metrics, tracing
//!
//! In observe-only mode every request is classified and decided, but none is shed.
//! Metrics: `palisade_loadshed_requests_total{priority,outcome,mode}` (outcome `admitted` or
//! `shed`; `mode="observe_only"` counts what observe-only mode would have shed) and
//! `palisade_loadshed_level`. The class is recorded as `priority` on the
//! current `tracing` span when that span declares the field (for example
//! `tracing::info_span!("request", priority = tracing::field::Empty)`).

mod classify;
mod config;
mod curve;
mod future;
mod layer;
pub mod metrics;
mod propagate;
mod service;
mod sustain;

pub use classify::{ClassifierFn, RequestInfo};
pub use config::{HeaderTrust, LoadShedConfig, PathMatch, RouteRule, default_header_values};
pub use curve::{FastRandom, RandomSource, shed_probability};
pub use future::{ResponseFuture, Shed};
pub use layer::{LoadShedBuilder, LoadShedLayer};
pub use propagate::{PropagatePriority, PropagatePriorityLayer, current_priority, with_priority};
pub use service::{InFlight, LoadShed};
