//! Keyed rate limits for axum and hyper servers: GCRA per client, API key, user or route, with a
//! client address you can trust behind proxies, the IETF `RateLimit` fields on every response,
//! and bounded memory.
//!
//! A rate limit is per-client fairness: it keeps one client (a scraper, a retry loop, a stolen
//! key) from using the capacity everyone shares, and answers it with `429 Too Many Requests`
//! before the server is overloaded, so the overload protection (`503`) behind it stays for real
//! overload.
//!
//! - **GCRA.** One theoretical arrival time per key, exact to the nanosecond, no window boundary
//!   at which twice the rate gets through. `PolicyConfig::per_minute(60)` means sixty per minute.
//! - **Several policies at once** (`60/min` and `1000/h` and `10000/day`): a request is admitted
//!   only if all admit it, and a refused request spends nothing from the others.
//! - **Keys** ([`KeySource`]): the client address (default), a header (API key), the
//!   authenticated user ([`RateLimitKey`]), the route template, one global budget, or any closure
//!   ([`KeyExtractor`]). IPv6 clients are grouped per /64 (configurable), since one host owns a
//!   whole prefix.
//! - **A client address you can trust** ([`ClientIpResolver`]): the TCP peer, unless it is a
//!   trusted proxy; then `X-Forwarded-For` (or RFC 7239 `Forwarded`) walked from the right across
//!   all its lines. Spoofed entries never change the key. Handlers get the same answer through
//!   the [`ClientIp`] extractor.
//! - **Responses**: a refusal is `429` with `Retry-After` (the wait, rounded up, at least 1 s)
//!   and an RFC 9457 problem body naming the policy. Every response carries
//!   `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11), optionally the
//!   legacy `X-RateLimit-*` trio.
//! - **Bounded memory, no cleanup task**: a hard cap on keys per policy; idle keys (full buckets,
//!   no state) are swept inline, and at the cap the keys closest to expiry are forgotten first.
//! - **Shared state**: created once when the layer is built, so every route, clone and
//!   connection enforces the same limits. Global with `Router::layer`, per route with rules or
//!   `Router::route_layer`.
//! - **Observe-only mode**: counts and logs what it would refuse, serves everything.
//! - **One limit for every replica** ([`RedisConfig`], feature `redis`): every policy of a
//!   request in one Redis round trip, under a deadline and a circuit breaker; while Redis is
//!   unreachable each replica limits on its own at a configured share (or answers 503), and the
//!   shared limit returns by itself. Other stores implement [`RateLimitBackend`].
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{Router, routing::{get, post}};
//! use palisade_rate_limit::{ClientIp, PolicyConfig, RateLimitLayer};
//!
//! let limits = RateLimitLayer::builder()
//!     // Every route: 60 per minute per client, bursts of 10; and 1000 per hour.
//!     .policy("per_minute", PolicyConfig::per_minute(60).burst(10))
//!     .policy("per_hour", PolicyConfig::per_hour(1000))
//!     // The login route: 5 per minute per client instead.
//!     .define_policy("login", PolicyConfig::per_minute(5))
//!     .rule("/login", ["login"])
//!     // Behind a load balancer in 10.0.0.0/8 that appends to X-Forwarded-For.
//!     .trusted_proxies(["10.0.0.0/8"])
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|ClientIp(ip): ClientIp| async move { format!("hello {ip}") }))
//!     .route("/login", post(|| async { "welcome" }))
//!     .layer(limits);
//! // Serve with the peer address available:
//! // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//! # let _ = std::marker::PhantomData::<SocketAddr>;
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! A refusal, from the policy above after a burst:
//!
//! ```text
//! HTTP/1.1 429 Too Many Requests
//! content-type: application/problem+json
//! cache-control: no-store
//! retry-after: 1
//! ratelimit-policy: "per_minute";q=60;w=60, "per_hour";q=1000;w=3600
//! ratelimit: "per_minute";r=0;t=10, "per_hour";r=990;t=36
//!
//! {"detail":"Rate limit \"per_minute\" exceeded. Retry after the delay in Retry-After.",
//!  "policy":"per_minute","reason":"quota_exceeded","status":429,"title":"Too Many Requests",
//!  "type":"urn:palisade:problem:quota_exceeded","violated-policies":["per_minute"]}
//! ```
//!
//! # Keys by user, from configuration
//!
//! ```
//! use axum::{Router, extract::Request, middleware::{self, Next}, response::Response, routing::get};
//! use palisade_rate_limit::{KeySource, PolicyConfig, RateLimitConfig, RateLimitKey, RateLimitLayer};
//!
//! // An authentication middleware records who is calling.
//! async fn authenticate(mut request: Request, next: Next) -> Response {
//!     if let Some(user) = request.headers().get("x-user").and_then(|v| v.to_str().ok()) {
//!         let user = user.to_owned();
//!         request.extensions_mut().insert(RateLimitKey::new(user));
//!     }
//!     next.run(request).await
//! }
//!
//! let mut config = RateLimitConfig::default();
//! config.policies.insert("per_user".into(), PolicyConfig::per_hour(5000).key(KeySource::User));
//! config.default_policies = vec!["per_user".into()];
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .layer(RateLimitLayer::from_config(config)?)
//!     .layer(middleware::from_fn(authenticate)); // outer: runs first
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! # Shared by replicas, in Redis
//!
//! ```
//! # #[cfg(feature = "redis")] {
//! use std::time::Duration;
//! use palisade_rate_limit::{FailMode, KeySource, PolicyConfig, RateLimitLayer, RedisConfig};
//!
//! let mut redis = RedisConfig::new("redis://127.0.0.1:6379/0");
//! redis.deadline = Duration::from_millis(5); // then this request is decided locally
//! redis.fail_mode = FailMode::Open; // while Redis is down: limit locally...
//! redis.local_share = 1.0 / 3.0; // ...at a third each, for three replicas
//! let limits = RateLimitLayer::builder()
//!     .policy("per_key", PolicyConfig::per_minute(600).key(KeySource::Header("x-api-key".into())))
//!     .redis(redis)
//!     .build()?; // connects on first use, in the background: Redis may be down at start
//! # let _ = limits;
//! # }
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_rate_limit_requests_total` | counter | `policy`, `outcome` (`admitted`, `limited`, `backend_error`, `unavailable`), `mode` (`enforce`, or `observe_only`: `limited` then counts what would have been refused, and was served) |
//! | `palisade_rate_limit_keys` | gauge | `policy` |
//! | `palisade_rate_limit_evictions_total` | counter | `policy`, `reason` (`idle`, `capacity`) |
//! | `palisade_rate_limit_backend_state` | gauge | `backend`: 0 shared, 1 failing open, 2 failing closed |
//! | `palisade_rate_limit_redis_calls_total` | counter | `outcome` (`ok`, `error`, `timeout`) |
//! | `palisade_rate_limit_redis_call_duration_seconds` | histogram | |
//! | `palisade_rate_limit_redis_fallbacks_total` | counter | |
//! | `palisade_rate_limit_redis_lease_hits_total` | counter | `outcome` (`admitted`, `refused`) |
//!
//! A request refused by one policy counts `limited` for that policy only; policies that would
//! have admitted it count nothing (they spent nothing). Metric handles are registered when the
//! layer is built: install the recorder first. No label ever carries a key.

mod backend;
mod client_ip;
mod config;
mod future;
mod gcra;
mod headers;
mod key;
mod layer;
mod limiter;
pub mod metrics;
mod policy;
mod remote;
mod service;
mod store;

pub use backend::{
    BackendUnavailable, BoxError, Check, Decision, MAX_POLICIES_PER_RULE, Pending, PolicyState,
    RateLimitBackend,
};
pub use client_ip::{ClientIp, ClientIpResolver, ForwardedHeader};
pub use config::{PolicyConfig, RateLimitConfig, RuleConfig};
pub use future::ResponseFuture;
pub use key::{Key, KeyExtractor, KeySource, RateLimitKey, RequestInfo};
pub use layer::{RateLimitBuilder, RateLimitLayer};
pub use policy::Policy;
pub use remote::{BackendState, FailMode, RedisConfig};
pub use service::RateLimit;

#[cfg(test)]
mod tests;
