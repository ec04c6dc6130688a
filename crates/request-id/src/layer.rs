//! The server layer.

use std::{fmt, sync::Arc};

use http::HeaderName;
use palisade_core::ConfigError;
use tower::Layer;

use crate::{
    config::{RequestIdBuilder, RequestIdConfig},
    service::{RequestIdService, Settings},
};

/// Gives every request an id: keeps a valid, trusted incoming one or makes a fresh one, and puts
/// it in the request extensions (for the [`RequestId`](crate::RequestId) extractor), on the
/// request and response headers, in a `request` span around the inner service, and as the
/// [current request id](crate::RequestId::current) for outgoing calls.
///
/// The layer's settings are created once, when it is built, and shared by every service it
/// makes (it holds no per-request or per-connection state besides that).
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade_request_id::RequestIdLayer;
///
/// // Defaults: `x-request-id`, UUID v7, keep valid incoming ids.
/// let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(RequestIdLayer::new());
///
/// // Or configured:
/// let layer = RequestIdLayer::builder()
///     .alias("x-correlation-id")
///     .trusted_peers(["10.0.0.0/8"])
///     .build()
///     .expect("valid configuration");
/// ```
#[derive(Clone)]
pub struct RequestIdLayer {
    settings: Arc<Settings>,
}

impl RequestIdLayer {
    /// The layer with [`RequestIdConfig::default`] settings.
    pub fn new() -> Self {
        Self::from_settings(Arc::new(Settings::defaults()))
    }

    /// A builder starting from the defaults.
    pub fn builder() -> RequestIdBuilder {
        RequestIdBuilder::default()
    }

    /// The layer for `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] keyed `request_id.<field>` when a header name is invalid or repeated,
    /// the charset or a trusted peer range does not parse, `max_length` is 0 or above 1024, the
    /// charset or length would refuse the layer's own generated ids, or `trusted_peers` does not
    /// agree with `trust`.
    pub fn from_config(config: RequestIdConfig) -> Result<Self, ConfigError> {
        config.into_layer()
    }

    pub(crate) fn from_settings(settings: Arc<Settings>) -> Self {
        Self { settings }
    }

    /// The header that carries the id.
    pub fn header_name(&self) -> &HeaderName {
        &self.settings.header
    }
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RequestIdLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestIdLayer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService::new(inner, self.settings.clone())
    }
}
