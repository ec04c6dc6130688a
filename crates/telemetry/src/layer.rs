//! The server layer.

use std::sync::Arc;

use palisade_core::ConfigError;
use tower::Layer;

use crate::{
    config::{Settings, TelemetryBuilder, TelemetryConfig},
    service::Telemetry,
};

/// One span and the HTTP metrics per request, for an axum `Router` or any tower HTTP service.
///
/// See the [crate documentation](crate) for what it records and how it composes.
/// [`TelemetryLayer::new`] has the [defaults](TelemetryConfig::default); [`TelemetryLayer::builder`]
/// changes them. Cheap to clone: every clone (and every service it makes) shares one state.
#[derive(Debug, Clone)]
pub struct TelemetryLayer {
    settings: Arc<Settings>,
}

impl TelemetryLayer {
    /// The layer with the default configuration: spans and metrics on, `INFO` spans, incoming
    /// trace context accepted, no query string, no headers.
    pub fn new() -> Self {
        // The default configuration is valid (a unit test checks it).
        Self::from_config(TelemetryConfig::default())
            .unwrap_or_else(|e| unreachable!("default telemetry configuration: {e}"))
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// The layer for `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] keyed `telemetry.<field>` when a header name is invalid, repeated or a
    /// credential header, `max_tracestate_len` is outside 512..=8192, a redacted query key is
    /// empty, or `default_scheme` is not `http` or `https`.
    pub fn from_config(config: TelemetryConfig) -> Result<Self, ConfigError> {
        config.into_layer()
    }

    pub(crate) fn from_settings(settings: Arc<Settings>) -> Self {
        Self { settings }
    }
}

impl Default for TelemetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Telemetry::new(inner, self.settings.clone())
    }
}
