//! [`RequestGuardLayer`] and its builder.

use std::{borrow::Cow, fmt, sync::Arc};

use http::Method;
use palisade_core::ConfigError;
use tower_layer::Layer;

use crate::{
    config::{Action, RequestGuardConfig},
    deny::DenyPattern,
    guard::Guard,
    path::DoubleSlash,
    service::RequestGuard,
    target::Verdict,
};

/// Refuses hostile request targets before they reach the application; see the
/// [crate docs](crate).
///
/// The policy is validated, and every rejection response and metric handle prepared, once, here;
/// the layer and every service it makes share them through an `Arc`.
#[derive(Clone)]
pub struct RequestGuardLayer {
    guard: Arc<Guard>,
}

impl RequestGuardLayer {
    /// The guard with the documented defaults ([`RequestGuardConfig::default`]).
    pub fn new() -> Self {
        match Self::from_config(RequestGuardConfig::default()) {
            Ok(layer) => layer,
            // The defaults are constants that `config::tests::defaults_are_valid` checks.
            Err(e) => unreachable!("the default request guard configuration is invalid: {e}"),
        }
    }

    /// A builder starting from the defaults.
    pub fn builder() -> RequestGuardBuilder {
        RequestGuardBuilder {
            config: RequestGuardConfig::default(),
        }
    }

    /// Validates `config` and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (see [`RequestGuardConfig::validate`]).
    pub fn from_config(config: RequestGuardConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            guard: Arc::new(Guard::new(config)?),
        })
    }

    /// The configuration this layer was built from.
    pub fn config(&self) -> &RequestGuardConfig {
        &self.guard.config
    }

    /// What the guard decides for `method` and a raw request `target` (path and query as sent,
    /// bytes because hostile targets need not be UTF-8). Nothing is counted or logged. The
    /// decision ignores the mode: observe-only mode serves what this rejects.
    ///
    /// ```
    /// use http::Method;
    /// use palisade_request_guard::{Reason, RequestGuardLayer, Verdict};
    ///
    /// let guard = RequestGuardLayer::new();
    /// assert_eq!(guard.check(&Method::GET, b"/files/report.pdf?v=2"), Verdict::Pass);
    /// assert_eq!(
    ///     guard.check(&Method::GET, b"/files/%2e%2e/%2e%2e/etc/passwd"),
    ///     Verdict::Reject(Reason::DotSegment)
    /// );
    /// ```
    pub fn check(&self, method: &Method, target: &[u8]) -> Verdict {
        self.guard.policy.verdict(method, target)
    }
}

impl Default for RequestGuardLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RequestGuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestGuardLayer")
            .field("config", &self.guard.config)
            .finish()
    }
}

impl<S> Layer<S> for RequestGuardLayer {
    type Service = RequestGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestGuard::new(inner, Arc::clone(&self.guard))
    }
}

/// Builds a [`RequestGuardLayer`]; every setter documents its default.
///
/// ```
/// use palisade_request_guard::{Action, DenyPattern, DoubleSlash, RequestGuardLayer};
///
/// let guard = RequestGuardLayer::builder()
///     .double_slashes(DoubleSlash::Redirect)
///     .path_parameters(Action::Reject)
///     .allow_method("PROPFIND")
///     .deny(DenyPattern::segment(".git"))
///     .max_uri_length(4096)
///     .build()?;
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestGuardBuilder {
    config: RequestGuardConfig,
}

/// A builder starting from `config`, for a configuration read from a file.
impl From<RequestGuardConfig> for RequestGuardBuilder {
    fn from(config: RequestGuardConfig) -> Self {
        Self { config }
    }
}

impl RequestGuardBuilder {
    palisade_core::enforcement_setters!("count and log refusals, serve every request.");

    /// `.` and `..` segments. Default reject.
    pub fn dot_segments(mut self, action: Action) -> Self {
        self.config.dot_segments = action;
        self
    }

    /// `%2F` and `%5C` in the path. Default reject.
    pub fn encoded_slashes(mut self, action: Action) -> Self {
        self.config.encoded_slashes = action;
        self
    }

    /// Raw `\` in the path. Default reject.
    pub fn backslashes(mut self, action: Action) -> Self {
        self.config.backslashes = action;
        self
    }

    /// Empty segments (`//`). Default reject.
    pub fn double_slashes(mut self, action: DoubleSlash) -> Self {
        self.config.double_slashes = action;
        self
    }

    /// Escapes that survive one decoding (`%252e`). Default reject.
    pub fn double_encoding(mut self, action: Action) -> Self {
        self.config.double_encoding = action;
        self
    }

    /// NUL in the path or query. Default reject.
    pub fn null_bytes(mut self, action: Action) -> Self {
        self.config.null_bytes = action;
        self
    }

    /// Other control characters in the path or query. Default reject.
    pub fn control_characters(mut self, action: Action) -> Self {
        self.config.control_characters = action;
        self
    }

    /// Malformed percent-escapes. Default reject.
    pub fn invalid_percent_encoding(mut self, action: Action) -> Self {
        self.config.invalid_percent_encoding = action;
        self
    }

    /// A decoded path that is not UTF-8. Default reject.
    pub fn invalid_utf8(mut self, action: Action) -> Self {
        self.config.invalid_utf8 = action;
        self
    }

    /// `;` path parameters. Default allow.
    pub fn path_parameters(mut self, action: Action) -> Self {
        self.config.path_parameters = action;
        self
    }

    /// The longest path + query in bytes. Default 8192.
    pub fn max_uri_length(mut self, bytes: usize) -> Self {
        self.config.max_uri_length = bytes;
        self
    }

    /// The longest query in bytes. Default 4096.
    pub fn max_query_length(mut self, bytes: usize) -> Self {
        self.config.max_query_length = bytes;
        self
    }

    /// Replaces the method allow-list. Default GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS.
    pub fn allowed_methods<I, M>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<Cow<'static, str>>,
    {
        self.config.allowed_methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a method to the allow-list.
    pub fn allow_method(mut self, method: impl Into<Cow<'static, str>>) -> Self {
        self.config.allowed_methods.push(method.into());
        self
    }

    /// Adds a deny pattern. Default none.
    pub fn deny(mut self, pattern: DenyPattern) -> Self {
        self.config.deny.push(pattern);
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &RequestGuardConfig {
        &self.config
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`RequestGuardLayer::from_config`].
    pub fn build(self) -> Result<RequestGuardLayer, ConfigError> {
        RequestGuardLayer::from_config(self.config)
    }
}
