//! The shared backend: one limit for every replica, kept in Redis.
//!
//! [`RedisConfig`] is plain data and always compiled (a configuration file reads the same with
//! or without the `redis` feature); the backend itself needs the feature.

#[cfg(feature = "redis")]
mod backend;
mod config;
#[cfg(feature = "redis")]
mod lease;
#[cfg(feature = "redis")]
mod metrics;

#[cfg(feature = "redis")]
pub(crate) use backend::RedisBackend;
pub use config::{FailMode, RedisConfig};

/// Where the limits are decided right now ([`RateLimitLayer::backend_state`](crate::RateLimitLayer::backend_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendState {
    /// In this process's memory (no shared backend configured).
    Local,
    /// In the shared backend: one limit for every replica.
    Shared,
    /// The shared backend is unreachable: each replica limits on its own, at its local share.
    FailingOpen,
    /// The shared backend is unreachable: requests the limits apply to are refused with 503.
    FailingClosed,
}

impl BackendState {
    /// The name used in logs and readiness checks.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Shared => "shared",
            Self::FailingOpen => "failing_open",
            Self::FailingClosed => "failing_closed",
        }
    }

    /// Whether every replica enforces one limit (or there is only this one).
    pub fn is_healthy(self) -> bool {
        matches!(self, Self::Local | Self::Shared)
    }

    /// The value of the `palisade_rate_limit_backend_state` gauge: 0 shared, 1 failing open,
    /// 2 failing closed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn gauge(self) -> f64 {
        match self {
            Self::Local | Self::Shared => 0.0,
            Self::FailingOpen => 1.0,
            Self::FailingClosed => 2.0,
        }
    }
}
