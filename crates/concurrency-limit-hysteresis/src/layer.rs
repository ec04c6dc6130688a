//! [`ConcurrencyLimitLayer`] and its builder.

use std::{borrow::Cow, sync::Arc, time::Duration};

use http::StatusCode;
use palisade_core::{ConfigError, OverloadState, Rejection, RetryAfter};
use tower_layer::Layer;

use crate::{
    config::{ConcurrencyLimitConfig, Watermark},
    limiter::{Limiter, LimiterHandle, LimiterSettings},
    metrics::Kind,
    service::ConcurrencyLimit,
};

/// Limits requests in flight with high/low water marks; see the [crate docs](crate).
///
/// The limiter's state is created once, here: every service this layer produces, on every route
/// and connection, shares it. Cloning the layer shares it too.
#[derive(Clone)]
pub struct ConcurrencyLimitLayer {
    // The limiter holds the rejection too, so services and permits hold one pointer and the
    // request path follows one.
    limiter: Arc<Limiter>,
}

impl std::fmt::Debug for ConcurrencyLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConcurrencyLimitLayer")
            .field(&self.handle())
            .finish()
    }
}

impl ConcurrencyLimitLayer {
    /// A limiter with the [defaults](ConcurrencyLimitConfig#fields), publishing into
    /// [`OverloadState::global`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] only when the global overload state has no free source slot.
    pub fn new() -> Result<Self, ConfigError> {
        Self::from_config(ConcurrencyLimitConfig::default())
    }

    /// A limiter with `config`, publishing into [`OverloadState::global`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see
    /// [`ConcurrencyLimitConfig::validate`]) or the overload state has no free source slot.
    pub fn from_config(config: ConcurrencyLimitConfig) -> Result<Self, ConfigError> {
        Self::build(config, None)
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ConcurrencyLimitBuilder {
        ConcurrencyLimitBuilder::from(ConcurrencyLimitConfig::default())
    }

    fn build(
        config: ConcurrencyLimitConfig,
        overload: Option<OverloadState>,
    ) -> Result<Self, ConfigError> {
        let thresholds = config.validate()?;
        let rejection = Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "concurrency_limit")
            .title("Service Unavailable")
            .detail("The server is at its concurrency limit. Retry after the delay in Retry-After.")
            .retry_after(RetryAfter::checked(
                config.retry_after,
                config.retry_after_jitter,
            )?)
            .build()?;
        let limiter = Limiter::new(LimiterSettings {
            kind: Kind::Requests,
            name: config.name,
            thresholds,
            dwell: config.min_shedding_dwell,
            critical_reserve: config.critical_reserve,
            mode: config.mode,
            overload,
            rejection: Some(rejection),
        })?;
        Ok(Self { limiter })
    }

    /// A read-only view of the limiter's state.
    pub fn handle(&self) -> LimiterHandle {
        LimiterHandle {
            limiter: Arc::clone(&self.limiter),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::new(inner, Arc::clone(&self.limiter))
    }
}

/// Builds a [`ConcurrencyLimitLayer`]; every setter documents its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConcurrencyLimitBuilder {
    config: ConcurrencyLimitConfig,
    overload: Option<OverloadState>,
}

/// A builder starting from `config`, for a configuration read from a file that still needs a
/// runtime handle (the overload state).
impl From<ConcurrencyLimitConfig> for ConcurrencyLimitBuilder {
    fn from(config: ConcurrencyLimitConfig) -> Self {
        Self {
            config,
            overload: None,
        }
    }
}

impl ConcurrencyLimitBuilder {
    /// Hard cap on requests in flight. Default 1000.
    pub fn max_in_flight(mut self, max: u32) -> Self {
        self.config.max_in_flight = max;
        self
    }

    /// Start shedding at this mark. Default 80% of the maximum.
    pub fn high_water(mut self, mark: Watermark) -> Self {
        self.config.high_water = mark;
        self
    }

    /// Stop shedding at this mark. Default 60% of the maximum.
    pub fn low_water(mut self, mark: Watermark) -> Self {
        self.config.low_water = mark;
        self
    }

    /// Shed at least this long once shedding starts. Default 0.
    pub fn min_shedding_dwell(mut self, dwell: Duration) -> Self {
        self.config.min_shedding_dwell = dwell;
        self
    }

    /// Whether `CriticalPlus` requests may use the headroom above high water. Default true.
    pub fn critical_reserve(mut self, enabled: bool) -> Self {
        self.config.critical_reserve = enabled;
        self
    }

    palisade_core::retry_after_setters!("5 s");

    palisade_core::enforcement_setters!("count and log what would be refused, serve everything.");

    /// Name for metrics, logs and the overload state. Default `global`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Publish into `state` instead of [`OverloadState::global`].
    pub fn overload_state(mut self, state: OverloadState) -> Self {
        self.overload = Some(state);
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &ConcurrencyLimitConfig {
        &self.config
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`ConcurrencyLimitLayer::from_config`].
    pub fn build(self) -> Result<ConcurrencyLimitLayer, ConfigError> {
        ConcurrencyLimitLayer::build(self.config, self.overload)
    }
}
