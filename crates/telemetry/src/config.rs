//! Configuration of [`TelemetryLayer`]: a plain [`TelemetryConfig`] with documented defaults, a
//! [`TelemetryBuilder`], and validation that returns a [`ConfigError`] instead of panicking.

use std::sync::Arc;

use http::HeaderName;
use opentelemetry::Key;
use palisade_core::{ConfigError, SpanLevel};

use crate::{
    access_log::{AccessLog, AccessLogConfig},
    export::LogFormat,
    layer::TelemetryLayer,
    metrics::HttpMetrics,
    propagation::DEFAULT_TRACESTATE_LIMIT,
};

/// The configuration section name used in error keys (`telemetry.request_headers[0]`).
const SECTION: &str = "telemetry";

/// The query keys whose values are replaced by `REDACTED` when `url.query` is recorded: the four
/// the semantic conventions name, and the usual credentials.
pub const DEFAULT_REDACTED_QUERY_KEYS: [&str; 22] = [
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    "access_token",
    "api_key",
    "apikey",
    "auth",
    "client_secret",
    "code",
    "id_token",
    "key",
    "passwd",
    "password",
    "pwd",
    "refresh_token",
    "secret",
    "session",
    "session_id",
    "sessionid",
    "state",
    "token",
];

/// Headers that carry credentials: refused in the allowlists, because a span is not the place
/// for them (tower-otel records every header, `Authorization` and `Cookie` included). Always
/// refused; [`TelemetryConfig::sensitive_headers`] adds to them.
pub const DEFAULT_SENSITIVE_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// The longest `tracestate` this layer can be told to propagate.
const MAX_TRACESTATE_LIMIT: usize = 8192;

/// The telemetry layer's configuration, as data.
///
/// Every field has a default (see [`TelemetryConfig::default`]); with the `serde` feature it deserializes
/// from a table in which every key is optional and unknown keys are refused:
///
/// ```toml
/// [telemetry]
/// tracing = true                  # the server span, W3C trace context, trace id extractor
/// metrics = true                  # http_server_request_duration_seconds, active requests
/// span_level = "info"
/// accept_incoming_context = true  # continue the caller's trace from `traceparent`
/// max_tracestate_len = 512
/// record_query = false            # `url.query`, with sensitive values redacted
/// redacted_query_keys = ["token", "sig"]
/// request_headers = ["x-forwarded-for"]
/// response_headers = ["content-type"]
/// default_scheme = "http"         # `url.scheme` when the request target has none
///
/// [telemetry.access_log]
/// enabled = true                  # one line per request on the `palisade::access` target
/// sample_successes = 10           # keep 1 in 10 successes; every failure and refusal is kept
/// client_address = "truncated"    # full | truncated | hashed | omitted
/// ```
///
/// `log_format = "json"` (in `[telemetry]`) is for the application's logger; see
/// [`TelemetryConfig::log_format`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
// Independent switches, each documented; an enum per switch would only rename `true`.
#[allow(clippy::struct_excessive_bools)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// Create a server span per request. Default `true`. Off, the layer does no tracing work at
    /// all: no span, no `traceparent` parsing, no [`TraceId`](crate::TraceId) extension.
    pub tracing: bool,
    /// Record the HTTP server metrics. Default `true`.
    pub metrics: bool,
    /// The level of the server span. Default [`SpanLevel::Info`].
    pub span_level: SpanLevel,
    /// Make the server span the child of a valid incoming `traceparent`. Default `true`. Turn it
    /// off on a service that faces untrusted clients and must start its own traces (the spec's
    /// "restart trace" at a front gate).
    pub accept_incoming_context: bool,
    /// The longest `tracestate` kept from a request and propagated, in characters (512 to 8192).
    /// Default 512.
    pub max_tracestate_len: usize,
    /// Record `url.query`. Default `false`: query strings often carry tokens.
    pub record_query: bool,
    /// The query keys whose values are replaced by `REDACTED` (ASCII case-insensitive). Default
    /// [`DEFAULT_REDACTED_QUERY_KEYS`].
    pub redacted_query_keys: Vec<String>,
    /// Request headers recorded as `http.request.header.<name>`. Default none. Headers that carry
    /// credentials (`authorization`, `cookie`, ...) are refused.
    pub request_headers: Vec<String>,
    /// Response headers recorded as `http.response.header.<name>`. Default none; credential
    /// headers (`set-cookie`, ...) are refused.
    pub response_headers: Vec<String>,
    /// `url.scheme` when the request target carries none (HTTP/1.1 origin-form): `http` or
    /// `https`, for a server behind a TLS terminator. Default `http`. Forwarded headers are not
    /// consulted: clients can forge them.
    pub default_scheme: String,
    /// Headers never recorded besides [`DEFAULT_SENSITIVE_HEADERS`] (`authorization`, `cookie`,
    /// `set-cookie`, ..., always refused): listing one in `request_headers` or
    /// `response_headers` is a configuration error. Default none (`["x-session-token"]`).
    pub sensitive_headers: Vec<String>,
    /// The access log: one line per request when its body ends. Default off.
    pub access_log: AccessLogConfig,
    /// How the application logs: text or JSON lines. The application copies it into
    /// [`TracingConfig::log_format`](crate::TracingConfig::log_format) before `init`. For `json`
    /// the server span also records `trace_id`, so every JSON line inside a request carries it
    /// beside `request_id`. Default text.
    pub log_format: LogFormat,
    /// Record the mutual-TLS client's certificate subject as `tls.client.subject` (the
    /// semantic conventions' name) on the server span. Default `false`: a subject may name a
    /// person.
    pub record_client_subject: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            tracing: true,
            metrics: true,
            span_level: SpanLevel::default(),
            accept_incoming_context: true,
            max_tracestate_len: DEFAULT_TRACESTATE_LIMIT,
            record_query: false,
            redacted_query_keys: DEFAULT_REDACTED_QUERY_KEYS
                .iter()
                .map(|&k| k.to_owned())
                .collect(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            default_scheme: "http".to_owned(),
            sensitive_headers: Vec::new(),
            access_log: AccessLogConfig::default(),
            log_format: LogFormat::Text,
            record_client_subject: false,
        }
    }
}

impl TelemetryConfig {
    /// Checks the configuration without building a layer.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, as [`TelemetryLayer::from_config`] reports it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        compile(self).map(drop).map_err(|e| e.within(SECTION))
    }

    pub(crate) fn into_layer(self) -> Result<TelemetryLayer, ConfigError> {
        compile(&self)
            .map(|settings| TelemetryLayer::from_settings(Arc::new(settings)))
            .map_err(|e| e.within(SECTION))
    }
}

/// Builds a [`TelemetryLayer`]; start with [`TelemetryLayer::builder`].
///
/// ```
/// use palisade_telemetry::{SpanLevel, TelemetryLayer};
///
/// let layer = TelemetryLayer::builder()
///     .span_level(SpanLevel::Info)
///     .record_query(true)
///     .request_header("x-forwarded-for")
///     .response_header("content-type")
///     .build()
///     .unwrap();
///
/// let err = TelemetryLayer::builder().request_header("authorization").build().unwrap_err();
/// assert_eq!(err.key(), "telemetry.request_headers[0]");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TelemetryBuilder {
    config: TelemetryConfig,
}

impl From<TelemetryConfig> for TelemetryBuilder {
    fn from(config: TelemetryConfig) -> Self {
        Self { config }
    }
}

impl TelemetryBuilder {
    /// Server spans on or off. Default on.
    pub fn tracing(mut self, on: bool) -> Self {
        self.config.tracing = on;
        self
    }

    /// HTTP metrics on or off. Default on.
    pub fn metrics(mut self, on: bool) -> Self {
        self.config.metrics = on;
        self
    }

    /// The level of the server span. Default [`SpanLevel::Info`].
    pub fn span_level(mut self, level: SpanLevel) -> Self {
        self.config.span_level = level;
        self
    }

    /// Continue the caller's trace from `traceparent`. Default on.
    pub fn accept_incoming_context(mut self, on: bool) -> Self {
        self.config.accept_incoming_context = on;
        self
    }

    /// The longest `tracestate` kept and propagated (512 to 8192). Default 512.
    pub fn max_tracestate_len(mut self, len: usize) -> Self {
        self.config.max_tracestate_len = len;
        self
    }

    /// Record `url.query`, redacted. Default off.
    pub fn record_query(mut self, on: bool) -> Self {
        self.config.record_query = on;
        self
    }

    /// Replaces the list of query keys whose values are redacted.
    pub fn redacted_query_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.config.redacted_query_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Records request header `name` as `http.request.header.<name>`.
    pub fn request_header(mut self, name: impl Into<String>) -> Self {
        self.config.request_headers.push(name.into());
        self
    }

    /// Records response header `name` as `http.response.header.<name>`.
    pub fn response_header(mut self, name: impl Into<String>) -> Self {
        self.config.response_headers.push(name.into());
        self
    }

    /// `url.scheme` for requests whose target has none: `http` or `https`. Default `http`.
    pub fn default_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.config.default_scheme = scheme.into();
        self
    }

    /// The access log ([`AccessLogConfig`]). Default off.
    pub fn access_log(mut self, config: AccessLogConfig) -> Self {
        self.config.access_log = config;
        self
    }

    /// Records the mutual-TLS client's subject as `tls.client.subject`
    /// ([`TelemetryConfig::record_client_subject`]). Default off.
    pub fn record_client_subject(mut self, enabled: bool) -> Self {
        self.config.record_client_subject = enabled;
        self
    }

    /// Adds a header that is never recorded ([`TelemetryConfig::sensitive_headers`]).
    pub fn sensitive_header(mut self, name: impl Into<String>) -> Self {
        self.config.sensitive_headers.push(name.into());
        self
    }

    /// The application's log format; `Json` also records `trace_id` on the server span.
    /// Default text.
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.config.log_format = format;
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`], as [`TelemetryLayer::from_config`] reports it.
    pub fn build(self) -> Result<TelemetryLayer, ConfigError> {
        self.config.into_layer()
    }
}

/// The validated configuration, ready for the request path.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Settings {
    pub(crate) tracing: bool,
    pub(crate) metrics: bool,
    pub(crate) span_level: SpanLevel,
    pub(crate) accept_incoming_context: bool,
    pub(crate) max_tracestate_len: usize,
    pub(crate) record_query: bool,
    pub(crate) redacted_query_keys: Box<[Box<str>]>,
    pub(crate) request_headers: Box<[(HeaderName, Key)]>,
    pub(crate) response_headers: Box<[(HeaderName, Key)]>,
    pub(crate) default_https: bool,
    pub(crate) http_metrics: HttpMetrics,
    pub(crate) access_log: Option<AccessLog>,
    /// Record `trace_id` on the server span (JSON logs).
    pub(crate) trace_id_field: bool,
    pub(crate) record_client_subject: bool,
}

fn headers(
    field: &'static str,
    prefix: &str,
    names: &[String],
    sensitive: &[String],
) -> Result<Box<[(HeaderName, Key)]>, ConfigError> {
    let mut out: Vec<(HeaderName, Key)> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = format!("{field}[{i}]");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(key.clone(), format!("{name:?} is not a header name")))?;
        if DEFAULT_SENSITIVE_HEADERS.contains(&header.as_str())
            || sensitive
                .iter()
                .any(|s| s.eq_ignore_ascii_case(header.as_str()))
        {
            return Err(ConfigError::new(
                key,
                format!("{header} is a sensitive header and is never recorded"),
            ));
        }
        if out.iter().any(|(h, _)| *h == header) {
            return Err(ConfigError::new(key, format!("{header} is listed twice")));
        }
        let attribute: Arc<str> = format!("{prefix}{header}").into();
        out.push((header, Key::from(attribute)));
    }
    Ok(out.into_boxed_slice())
}

fn compile(config: &TelemetryConfig) -> Result<Settings, ConfigError> {
    if !(DEFAULT_TRACESTATE_LIMIT..=MAX_TRACESTATE_LIMIT).contains(&config.max_tracestate_len) {
        return Err(ConfigError::new(
            "max_tracestate_len",
            format!(
                "must be from {DEFAULT_TRACESTATE_LIMIT} (what the W3C spec says to propagate) to \
                 {MAX_TRACESTATE_LIMIT}, not {}",
                config.max_tracestate_len
            ),
        ));
    }
    for (i, key) in config.redacted_query_keys.iter().enumerate() {
        if key.is_empty() {
            return Err(ConfigError::new(
                format!("redacted_query_keys[{i}]"),
                "must not be empty",
            ));
        }
    }
    let default_https = match config.default_scheme.as_str() {
        "http" => false,
        "https" => true,
        other => {
            return Err(ConfigError::new(
                "default_scheme",
                format!("must be \"http\" or \"https\", not {other:?}"),
            ));
        }
    };
    Ok(Settings {
        tracing: config.tracing,
        metrics: config.metrics,
        span_level: config.span_level,
        accept_incoming_context: config.accept_incoming_context,
        max_tracestate_len: config.max_tracestate_len,
        record_query: config.record_query,
        redacted_query_keys: config
            .redacted_query_keys
            .iter()
            .map(|k| k.as_str().into())
            .collect(),
        request_headers: headers(
            "request_headers",
            "http.request.header.",
            &config.request_headers,
            &config.sensitive_headers,
        )?,
        response_headers: headers(
            "response_headers",
            "http.response.header.",
            &config.response_headers,
            &config.sensitive_headers,
        )?,
        default_https,
        http_metrics: HttpMetrics::new(),
        access_log: config.access_log.compile()?,
        trace_id_field: config.log_format == LogFormat::Json,
        record_client_subject: config.record_client_subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TelemetryConfig::default().validate().unwrap();
    }

    #[test]
    fn nonsense_is_refused_with_its_key() {
        let err = |config: TelemetryConfig| config.validate().unwrap_err().key().to_owned();
        assert_eq!(
            err(TelemetryConfig {
                max_tracestate_len: 100,
                ..TelemetryConfig::default()
            }),
            "telemetry.max_tracestate_len"
        );
        assert_eq!(
            err(TelemetryConfig {
                default_scheme: "ftp".into(),
                ..TelemetryConfig::default()
            }),
            "telemetry.default_scheme"
        );
        assert_eq!(
            err(TelemetryConfig {
                request_headers: vec!["x-ok".into(), "bad header".into()],
                ..TelemetryConfig::default()
            }),
            "telemetry.request_headers[1]"
        );
        assert_eq!(
            err(TelemetryConfig {
                response_headers: vec!["Set-Cookie".into()],
                ..TelemetryConfig::default()
            }),
            "telemetry.response_headers[0]"
        );
        assert_eq!(
            err(TelemetryConfig {
                request_headers: vec!["x-a".into(), "X-A".into()],
                ..TelemetryConfig::default()
            }),
            "telemetry.request_headers[1]"
        );
        assert_eq!(
            err(TelemetryConfig {
                redacted_query_keys: vec![String::new()],
                ..TelemetryConfig::default()
            }),
            "telemetry.redacted_query_keys[0]"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_with_defaults_and_refuses_unknown_keys() {
        let config: TelemetryConfig = serde_json::from_str(
            r#"{"record_query": true, "span_level": "debug", "request_headers": ["x-tenant"]}"#,
        )
        .unwrap();
        assert!(config.record_query && config.tracing && config.metrics);
        assert_eq!(config.span_level, SpanLevel::Debug);
        assert_eq!(config.max_tracestate_len, 512);
        config.validate().unwrap();
        assert!(serde_json::from_str::<TelemetryConfig>(r#"{"unknown": 1}"#).is_err());
    }

    #[test]
    fn sensitive_headers_are_never_recorded_and_the_list_grows() {
        let err = TelemetryLayer::builder()
            .response_header("Set-Cookie")
            .build()
            .unwrap_err();
        assert_eq!(err.key(), "telemetry.response_headers[0]");
        assert!(
            TelemetryLayer::builder()
                .request_header("x-session-token")
                .build()
                .is_ok()
        );
        let err = TelemetryLayer::builder()
            .sensitive_header("X-Session-Token")
            .request_header("x-session-token")
            .build()
            .unwrap_err();
        assert_eq!(err.key(), "telemetry.request_headers[0]");
        assert!(err.problem().contains("sensitive header"), "{err}");
        // Adding one keeps the built-in ones.
        let err = TelemetryLayer::builder()
            .sensitive_header("x-session-token")
            .request_header("authorization")
            .build()
            .unwrap_err();
        assert_eq!(err.key(), "telemetry.request_headers[0]");
    }

    #[test]
    fn header_attributes_are_named_by_the_conventions() {
        let settings = compile(&TelemetryConfig {
            request_headers: vec!["X-Forwarded-For".into()],
            response_headers: vec!["content-type".into()],
            ..TelemetryConfig::default()
        })
        .unwrap();
        assert_eq!(
            settings.request_headers[0].1.as_str(),
            "http.request.header.x-forwarded-for"
        );
        assert_eq!(
            settings.response_headers[0].1.as_str(),
            "http.response.header.content-type"
        );
    }
}
