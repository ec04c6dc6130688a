//! Palisade: Tower middleware that makes hyper/axum HTTP/1.1 servers hold up in production.
//!
//! One dependency, one call: [`Stack::builder`] builds every layer in the right order,
//! [`Stack::apply`] puts them on your existing `Router`, and [`serve`] runs it with a connection
//! limit, client timeouts, header limits and a Kubernetes-grade drain on SIGTERM. The whole
//! stack reads from one `palisade.toml` with environment overrides ([`PalisadeConfig::load`]).
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use palisade::{PalisadeConfig, Stack};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = PalisadeConfig::load()?; // palisade.toml + PALISADE_*__* overrides
//!     let stack = Stack::builder().config(config).build()?;
//!     let app = stack.apply(Router::new().route("/", get(|| async { "hello" })));
//!     let listener = stack.bind().await?;
//!     stack.health().mark_started();
//!     let report = palisade::serve(listener, app, stack.server()).await?;
//!     println!("{report}");
//!     Ok(())
//! }
//! ```
//!
//! Outgoing calls get the same care: [`Stack::client`] wraps an HTTP client (hyper's, any tower
//! service) in the [`client`] stack configured by `[clients.NAME]`: request id, trace context and
//! priority propagated, retries within a budget, a circuit breaker that sees every attempt, and a
//! per-attempt timeout.
//!
//! Each layer crate is re-exported and usable alone:
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
//! | [`ws`] | `palisade-ws-backpressure` | WebSocket send queues bounded in bytes and messages, overflow and slow-client policies, a broadcast hub |
//! | [`telemetry`] | `palisade-telemetry` | OpenTelemetry server spans with W3C trace context, OTLP export, semconv Prometheus metrics, `/metrics` |

pub mod admin;
pub mod client;
mod config;
mod optional;
pub mod preset;
mod serve;
mod stack;

pub use admin::{ADMIN_TOKEN_ENV, AdminTokenLayer};
pub use client::{ClientConfig, ClientLayer};
pub use config::{
    CONFIG_FILE_ENV, DEFAULT_ADDR, ENV_PREFIX, LayerToggles, LoadError, MIN_HEADER_BYTES,
    OpsConfig, PalisadeConfig, RequestLimits, ServerConfig,
};
pub use optional::{Optional, OptionalFuture, OptionalService};
pub use palisade_bulkhead as bulkhead;
pub use palisade_circuit_breaker as circuit_breaker;
pub use palisade_concurrency_limit_hysteresis as concurrency_limit;
pub use palisade_core as core;
pub use palisade_health as health;
pub use palisade_loadshed_priority as loadshed;
pub use palisade_overload_monitor as overload_monitor;
pub use palisade_rate_limit as rate_limit;
pub use palisade_request_guard as request_guard;
pub use palisade_request_id as request_id;
pub use palisade_retry as retry;
pub use palisade_security_headers as security_headers;
pub use palisade_telemetry as telemetry;
pub use palisade_timeout as timeout;
pub use palisade_ws_backpressure as ws;
#[cfg(feature = "tls")]
pub use serve::tls_metrics;
pub use serve::{
    ClientAuth, ServeReport, Server, TlsConfig, TlsVersion, serve, serve_with_shutdown,
    shutdown_signal,
};
pub use stack::{Layers, NoDelayListener, Stack, StackBuilder};

/// The README's Rust snippets, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
