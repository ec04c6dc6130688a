//! Named bulkheads for axum and hyper servers: bounded concurrency per route group, with a
//! bounded, optionally priority-ordered wait queue.
//!
//! A slow or abused endpoint group must not starve the others. A bulkhead gives a group of routes
//! its own pool of slots: when `/api` is saturated by slow requests, `/admin` (another bulkhead)
//! still answers at its normal latency.
//!
//! - **Slots and a bounded wait.** `max_concurrent` requests run at once; up to `max_queued` more
//!   wait at most `max_wait` for a slot. Beyond that, or when the wait expires, the request is
//!   answered at once with the core `503 Service Unavailable` + `Retry-After` +
//!   `application/problem+json` naming the bulkhead (`"bulkhead": "api"`) and the cause
//!   (`reason` `bulkhead_queue_full` or `bulkhead_wait_timeout`). `max_queued = 0` or
//!   `max_wait = 0` rejects at once when every slot is taken.
//! - **Fair order.** Waiters are served FIFO; with `priority_ordering`, by
//!   [`Priority`](palisade_core::Priority) first (highest first) and FIFO within a class. A new
//!   request never overtakes a waiter to a slot.
//! - **Queue places go to the important.** With `priority_ordering`, a request that finds the
//!   queue full but outranks its lowest waiter takes the place of the lowest-class, most recently
//!   queued one, which gets the `bulkhead_queue_full` 503 at once: critical requests are not
//!   turned away while sheddable ones hold queue places. Equal or lower classes, and every request
//!   in FIFO mode, are refused when the queue is full.
//! - **Exact cancellation.** A waiter whose client goes away leaves the queue at once; a slot
//!   handed to it at that moment is passed to the next waiter, never leaked.
//! - **Slots last until the body ends.** A slot is released when the response body has been sent,
//!   fails, or is dropped, not when headers are returned.
//! - **Shared state.** A bulkhead's state is created once; every clone of the layer, every route
//!   it is applied to (`Router::route_layer`, `nest`) and every connection share it. A
//!   [`BulkheadRegistry`] hands out bulkheads by name so routes declared apart share one.
//! - **Admission in `call`, rejection as a response.** No `HandleErrorLayer` needed.
//! - **Observe-only mode.** Never waits or rejects; counts what it would have refused at once.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::{get, post}};
//! use palisade_bulkhead::BulkheadLayer;
//!
//! let api = BulkheadLayer::builder().name("api")
//!     .max_concurrent(100)
//!     .max_queued(200)
//!     .max_wait(Duration::from_millis(500))
//!     .build()?;
//! let admin = BulkheadLayer::builder().name("admin")
//!     .max_concurrent(10)
//!     .max_queued(10)
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .nest(
//!         "/api",
//!         Router::new()
//!             .route("/orders", get(|| async { "orders" }))
//!             .route("/search", get(|| async { "results" }))
//!             .route_layer(api), // both routes share the 100 `api` slots
//!     )
//!     .nest(
//!         "/admin",
//!         Router::new()
//!             .route("/reindex", post(|| async { "started" }))
//!             .route_layer(admin), // 10 slots of its own
//!     );
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! Use `route_layer` (not `layer`) so unmatched paths (404) take no slot.
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_bulkhead_in_flight` | gauge | `bulkhead` |
//! | `palisade_bulkhead_queued` | gauge | `bulkhead` |
//! | `palisade_bulkhead_rejected_total` | counter | `bulkhead`, `reason` (`queue_full`, `wait_timeout`), `mode` (`enforce`, `observe_only`) |
//! | `palisade_bulkhead_wait_seconds` | histogram | `bulkhead` (requests that had to wait) |
//!
//! A waiter evicted from a full queue counts once as `reason="queue_full"`, when it is evicted,
//! and leaves `queued` unchanged (the request that evicted it takes its place).
//!
//! Metric handles are registered when a bulkhead is built: install the recorder first.

mod bulkhead;
mod config;
mod future;
mod layer;
pub mod metrics;
mod queue;
mod registry;
mod service;

pub use bulkhead::{Acquire, BulkheadPool, Permit, RejectReason};
pub use config::{BulkheadConfig, MAX_LIMIT, MAX_WAIT_LIMIT};
pub use future::ResponseFuture;
pub use layer::{BulkheadBuilder, BulkheadLayer};
pub use registry::BulkheadRegistry;
pub use service::Bulkhead;

#[cfg(test)]
mod tests;

#[cfg(all(test, palisade_loom))]
mod loom_tests;
