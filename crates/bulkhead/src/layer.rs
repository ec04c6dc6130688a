//! [`BulkheadLayer`] and its builder.

use std::{borrow::Cow, time::Duration};

use palisade_core::ConfigError;
use tower_layer::Layer;

use crate::{bulkhead::BulkheadPool, config::BulkheadConfig, service::Bulkhead};

/// Applies a named [`BulkheadPool`] to a service; see the [crate docs](crate).
///
/// The bulkhead's state is created once, when the layer is built: every service this layer
/// produces (every route of a `route_layer`, every connection) and every clone of the layer share
/// the same slots.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: BulkheadPool,
}

impl BulkheadLayer {
    /// A layer with a new bulkhead of the [defaults](BulkheadConfig), named `default`.
    pub fn new() -> Self {
        // The defaults are valid (a unit test checks it).
        Self::from_config(BulkheadConfig::default())
            .unwrap_or_else(|e| unreachable!("default bulkhead configuration: {e}"))
    }

    /// A layer with a new bulkhead configured by `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see [`BulkheadConfig::validate`]).
    pub fn from_config(config: BulkheadConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            bulkhead: BulkheadPool::new(config)?,
        })
    }

    /// A builder starting from the defaults; name the bulkhead with
    /// [`name`](BulkheadBuilder::name).
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder {
            config: BulkheadConfig::default(),
        }
    }

    /// The bulkhead this layer applies (a shared handle).
    pub fn bulkhead(&self) -> &BulkheadPool {
        &self.bulkhead
    }
}

impl Default for BulkheadLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl From<BulkheadPool> for BulkheadLayer {
    fn from(bulkhead: BulkheadPool) -> Self {
        Self { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.bulkhead.clone())
    }
}

/// Builds a [`BulkheadLayer`]; every setter documents its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct BulkheadBuilder {
    config: BulkheadConfig,
}

impl BulkheadBuilder {
    /// The name in metric labels (`bulkhead`), logs and rejections: 1 to 64 characters of
    /// `[A-Za-z0-9_.-]`. Default `default`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Slots: requests running at once. Default 100.
    pub fn max_concurrent(mut self, slots: u32) -> Self {
        self.config.max_concurrent = slots;
        self
    }

    /// Requests that may wait for a slot. Default 100; 0 rejects at once when every slot is taken.
    pub fn max_queued(mut self, waiters: u32) -> Self {
        self.config.max_queued = waiters;
        self
    }

    /// The longest a request waits for a slot. Default 1 s; 0 rejects at once.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait;
        self
    }

    /// Serve waiters by [`Priority`](palisade_core::Priority), highest first, and let a higher
    /// class evict the lowest, most recent waiter from a full queue (see
    /// [`BulkheadConfig::priority_ordering`]). Default false (FIFO, no eviction).
    pub fn priority_ordering(mut self, enabled: bool) -> Self {
        self.config.priority_ordering = enabled;
        self
    }

    palisade_core::retry_after_setters!("1 s");

    palisade_core::enforcement_setters!(
        "count what would wait or be refused, serve everything at once."
    );

    /// The configuration built so far.
    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`BulkheadLayer::from_config`].
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        BulkheadLayer::from_config(self.config)
    }
}
