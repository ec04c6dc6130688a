//! The server layer.

use std::sync::Arc;

use tower::Layer;

use crate::{
    config::{Builder, Config, Settings},
    service::Telemetry,
};

/// One span and the HTTP metrics per request, for an axum `Router` or any tower HTTP service.
///
/// See the [crate documentation](crate) for what it records and how it composes.
/// [`TelemetryLayer::new`] has the [defaults](Config::default); [`TelemetryLayer::builder`]
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
        Config::default()
            .build()
            .unwrap_or_else(|e| unreachable!("default telemetry configuration: {e}"))
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> Builder {
        Builder::default()
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
