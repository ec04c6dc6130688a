//! [`TimeoutLayer`] and its builder.

use std::{fmt, sync::Arc, time::Duration};

use palisade_core::ConfigError;
use tower_layer::Layer;

use crate::{config::TimeoutConfig, deadline::Deadline, service::Timeout};

/// Answers requests whose response has not started within the timeout; see the
/// [crate docs](crate).
///
/// The configuration is validated, and the answer and metric handle prepared, once, here; the
/// layer and every service it makes share them through an `Arc`.
#[derive(Clone)]
pub struct TimeoutLayer {
    deadline: Arc<Deadline>,
}

impl TimeoutLayer {
    /// A timeout of `timeout`, answered `503`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero timeout or one over a day
    /// ([`MAX_TIMEOUT`](crate::MAX_TIMEOUT)).
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        Self::builder().timeout(timeout).build()
    }

    /// A builder starting from the defaults ([`TimeoutConfig::default`]).
    pub fn builder() -> TimeoutBuilder {
        TimeoutBuilder {
            config: TimeoutConfig::default(),
        }
    }

    /// Validates `config` and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (see [`TimeoutConfig::validate`]).
    pub fn from_config(config: TimeoutConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            deadline: Arc::new(Deadline::new(config)?),
        })
    }

    /// The configuration this layer was built from.
    pub fn config(&self) -> &TimeoutConfig {
        &self.deadline.config
    }
}

impl fmt::Debug for TimeoutLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("config", &self.deadline.config)
            .finish()
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, Arc::clone(&self.deadline))
    }
}

/// Builds a [`TimeoutLayer`]; every setter documents its default.
///
/// ```
/// use std::time::Duration;
/// use palisade_timeout::TimeoutLayer;
///
/// let timeout = TimeoutLayer::builder()
///     .timeout(Duration::from_secs(10))
///     .status(504)
///     .build()?;
/// assert_eq!(timeout.config().status, 504);
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TimeoutBuilder {
    config: TimeoutConfig,
}

/// A builder starting from `config`, for a configuration read from a file.
impl From<TimeoutConfig> for TimeoutBuilder {
    fn from(config: TimeoutConfig) -> Self {
        Self { config }
    }
}

impl TimeoutBuilder {
    palisade_core::enforcement_setters!(
        "count and log requests that overrun the timeout, and let them finish."
    );

    /// The longest a request may take to start its response. Default 30 s, at most a day.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The status of the answer to a request that timed out: any 4xx or 5xx. Default 503.
    pub fn status(mut self, status: u16) -> Self {
        self.config.status = status;
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &TimeoutConfig {
        &self.config
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`TimeoutLayer::from_config`].
    pub fn build(self) -> Result<TimeoutLayer, ConfigError> {
        TimeoutLayer::from_config(self.config)
    }
}
