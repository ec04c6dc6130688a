//! The layer: a validated, shared policy.

use std::{fmt, sync::Arc};

use palisade_core::ConfigError;
use tower::Layer;

use crate::{
    config::{SecurityHeadersBuilder, SecurityHeadersConfig},
    policy::Policy,
    service::SecurityHeaders,
};

/// Adds security headers to every response of the services it wraps.
///
/// The policy is validated and every header value encoded once, when the layer is built; the
/// layer and every service it makes share it through an `Arc`, so cloning either is a
/// reference-count increment.
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade_security_headers::SecurityHeadersLayer;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(SecurityHeadersLayer::new());
/// ```
#[derive(Clone)]
pub struct SecurityHeadersLayer {
    policy: Arc<Policy>,
}

impl SecurityHeadersLayer {
    /// The documented default policy ([`SecurityHeadersConfig::default`]).
    pub fn new() -> Self {
        Self::preset(SecurityHeadersConfig::default())
    }

    /// The JSON API preset ([`SecurityHeadersConfig::api`]).
    pub fn api() -> Self {
        Self::preset(SecurityHeadersConfig::api())
    }

    /// The server-rendered pages preset ([`SecurityHeadersConfig::web_app`]).
    pub fn web_app() -> Self {
        Self::preset(SecurityHeadersConfig::web_app())
    }

    /// Everything OWASP recommends ([`SecurityHeadersConfig::strict`]).
    pub fn strict() -> Self {
        Self::preset(SecurityHeadersConfig::strict())
    }

    /// A builder starting from the default policy. Use [`SecurityHeadersConfig::into_builder`] to start from
    /// another preset.
    pub fn builder() -> SecurityHeadersBuilder {
        SecurityHeadersBuilder::default()
    }

    /// Validates `config` and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad key, such as
    /// `security_headers.permissions_policy`.
    pub fn from_config(config: SecurityHeadersConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            policy: Arc::new(Policy::compile(config)?),
        })
    }

    /// The configuration this layer was built from.
    pub fn config(&self) -> &SecurityHeadersConfig {
        self.policy.config()
    }

    /// The presets are constants whose validity the tests check, so this cannot fail.
    fn preset(config: SecurityHeadersConfig) -> Self {
        match Self::from_config(config) {
            Ok(layer) => layer,
            Err(e) => unreachable!("built-in preset is invalid: {e}"),
        }
    }
}

impl Default for SecurityHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SecurityHeadersLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityHeadersLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders::from_policy(inner, self.policy.clone())
    }
}
