//! Configuration: a plain [`RequestIdConfig`] with documented defaults, a [`RequestIdBuilder`], and validation
//! that returns a [`ConfigError`] instead of panicking.

use std::{
    fmt,
    sync::{Arc, atomic::AtomicBool},
};

use http::HeaderName;
use palisade_core::{ConfigError, EnforcementMode, SpanLevel, TrustedPeers};

use crate::{
    generator::{Generator, IdFormat, MakeRequestId},
    layer::RequestIdLayer,
    service::Settings,
    trust::{Cidr, Trust, TrustPolicy},
    validation::{Charset, DEFAULT_CHARSET, DEFAULT_MAX_LENGTH, Validator},
};

/// The default header, `x-request-id`.
pub const DEFAULT_HEADER: &str = "x-request-id";

/// The configuration section name used in error keys (`request_id.max_length`).
const SECTION: &str = "request_id";

/// The request id layer's configuration, as data.
///
/// Every field has a default (see [`RequestIdConfig::default`]); with the `serde` feature it deserializes
/// from a table in which every key is optional and unknown keys are refused:
///
/// ```toml
/// [request_id]
/// header = "x-request-id"
/// aliases = ["x-correlation-id"]
/// format = "uuid_v7"              # or "uuid_v4"
/// charset = "A-Za-z0-9._:-"
/// max_length = 128
/// trust = "trusted_peers"         # "always" (default) | "never" | "trusted_peers"
/// trusted_peers = ["10.0.0.0/8", "127.0.0.1"]
/// mode = "enforce"                # or "observe_only"
/// span_level = "info"             # "off" | "error" | "warn" | "info" | "debug" | "trace"
/// record_on_current_span = true
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RequestIdConfig {
    /// The header that carries the id on requests and responses. Default `x-request-id`.
    pub header: String,
    /// Other headers read on input when `header` is absent, in order, such as
    /// `x-correlation-id`. Default none. The response carries `header` only.
    pub aliases: Vec<String>,
    /// The format of fresh ids. Default [`IdFormat::UuidV7`].
    pub format: IdFormat,
    /// The characters an incoming id may contain, as a class body (see [`Charset::parse`]).
    /// Default `A-Za-z0-9._:-`.
    pub charset: String,
    /// The longest incoming id kept, in bytes (1 to 1024). Default 128.
    pub max_length: usize,
    /// Whose valid incoming ids are kept. Default [`TrustPolicy::Always`].
    pub trust: TrustPolicy,
    /// The peer ranges trusted under [`TrustPolicy::TrustedPeers`], in CIDR notation or as single
    /// addresses (see [`Cidr`]). Default none; required (and only allowed) with that policy.
    pub trusted_peers: Vec<String>,
    /// [`EnforcementMode::Enforce`] (the default) or [`EnforcementMode::ObserveOnly`]; see the
    /// crate documentation for what observe-only changes.
    pub mode: EnforcementMode,
    /// The level of the per-request span. Default [`SpanLevel::Info`].
    pub span_level: SpanLevel,
    /// Also record the id in a `request_id` field of the span that is current when the request
    /// enters the layer (a tracing layer placed outside this one declares that field empty).
    /// Default `true`.
    pub record_on_current_span: bool,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        Self {
            header: DEFAULT_HEADER.to_owned(),
            aliases: Vec::new(),
            format: IdFormat::default(),
            charset: DEFAULT_CHARSET.to_owned(),
            max_length: DEFAULT_MAX_LENGTH,
            trust: TrustPolicy::default(),
            trusted_peers: Vec::new(),
            mode: EnforcementMode::default(),
            span_level: SpanLevel::default(),
            record_on_current_span: true,
        }
    }
}

impl RequestIdConfig {
    /// Checks the configuration without building a layer.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, as [`RequestIdLayer::from_config`] reports it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        compile(self, Generator::Format(self.format))
            .map(drop)
            .map_err(|e| e.within(SECTION))
    }

    pub(crate) fn into_layer(self) -> Result<RequestIdLayer, ConfigError> {
        let generator = Generator::Format(self.format);
        compile(&self, generator)
            .map(|settings| RequestIdLayer::from_settings(Arc::new(settings)))
            .map_err(|e| e.within(SECTION))
    }
}

/// Builds a [`RequestIdLayer`]; start with [`RequestIdLayer::builder`].
///
/// ```
/// use palisade_request_id::{IdFormat, RequestIdLayer, TrustPolicy};
///
/// let layer = RequestIdLayer::builder()
///     .header("x-request-id")
///     .alias("x-correlation-id")
///     .format(IdFormat::UuidV7)
///     .max_length(64)
///     .trusted_peers(["10.0.0.0/8", "127.0.0.1"])
///     .build()
///     .unwrap();
///
/// let err = RequestIdLayer::builder().trusted_peers(["10.0.0.1/8"]).build().unwrap_err();
/// assert_eq!(err.key(), "request_id.trusted_peers[0]");
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct RequestIdBuilder {
    config: RequestIdConfig,
    custom: Option<Arc<dyn MakeRequestId>>,
}

impl fmt::Debug for RequestIdBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestIdBuilder")
            .field("config", &self.config)
            .field("custom_generator", &self.custom.is_some())
            .finish()
    }
}

impl From<RequestIdConfig> for RequestIdBuilder {
    fn from(config: RequestIdConfig) -> Self {
        Self {
            config,
            custom: None,
        }
    }
}

impl RequestIdBuilder {
    /// The header that carries the id. Default `x-request-id`.
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.config.header = name.into();
        self
    }

    /// Adds an input alias such as `x-correlation-id`, read when the main header is absent.
    pub fn alias(mut self, name: impl Into<String>) -> Self {
        self.config.aliases.push(name.into());
        self
    }

    /// The format of fresh ids. Default [`IdFormat::UuidV7`]. Replaces a custom generator.
    pub fn format(mut self, format: IdFormat) -> Self {
        self.config.format = format;
        self.custom = None;
        self
    }

    /// Makes fresh ids with `generator` instead of a built-in format.
    pub fn generator(mut self, generator: impl MakeRequestId) -> Self {
        self.custom = Some(Arc::new(generator));
        self
    }

    /// The characters an incoming id may contain. Default `A-Za-z0-9._:-`.
    pub fn charset(mut self, spec: impl Into<String>) -> Self {
        self.config.charset = spec.into();
        self
    }

    /// The longest incoming id kept, in bytes. Default 128.
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.config.max_length = max_length;
        self
    }

    /// Whose valid incoming ids are kept. Default [`TrustPolicy::Always`].
    pub fn trust(mut self, policy: TrustPolicy) -> Self {
        self.config.trust = policy;
        self
    }

    /// Keeps incoming ids only from peers in `ranges` (and sets
    /// [`TrustPolicy::TrustedPeers`]).
    pub fn trusted_peers<I, T>(mut self, ranges: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.config.trust = TrustPolicy::TrustedPeers;
        self.config.trusted_peers = ranges.into_iter().map(Into::into).collect();
        self
    }

    palisade_core::enforcement_setters!(
        "count and log what would be refused or replaced, change nothing."
    );

    /// The level of the per-request span. Default [`SpanLevel::Info`].
    pub fn span_level(mut self, level: SpanLevel) -> Self {
        self.config.span_level = level;
        self
    }

    /// Whether to record the id on the span current when the request enters. Default `true`.
    pub fn record_on_current_span(mut self, record: bool) -> Self {
        self.config.record_on_current_span = record;
        self
    }

    /// The configuration so far (a custom generator is not part of it).
    pub fn config(&self) -> &RequestIdConfig {
        &self.config
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`RequestIdLayer::from_config`]; a custom generator whose sample id fails the charset or length is a
    /// `request_id.generator` error.
    pub fn build(self) -> Result<RequestIdLayer, ConfigError> {
        let generator = match self.custom {
            Some(custom) => Generator::Custom(custom),
            None => Generator::Format(self.config.format),
        };
        compile(&self.config, generator)
            .map(|settings| RequestIdLayer::from_settings(Arc::new(settings)))
            .map_err(|e| e.within(SECTION))
    }
}

/// Header names that are common enough to keep as static names (cloning one is free).
const STATIC_NAMES: [&str; 6] = [
    "x-request-id",
    "x-correlation-id",
    "request-id",
    "correlation-id",
    "x-trace-id",
    "x-amzn-trace-id",
];

pub(crate) fn header_name(key: &str, name: &str) -> Result<HeaderName, ConfigError> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        ConfigError::new(
            key.to_owned(),
            format!("\"{}\" is not a valid header name", name.escape_debug()),
        )
    })?;
    Ok(STATIC_NAMES
        .iter()
        .find(|s| **s == parsed.as_str())
        .map_or(parsed, |s| HeaderName::from_static(s)))
}

fn compile(config: &RequestIdConfig, generator: Generator) -> Result<Settings, ConfigError> {
    let header = header_name("header", &config.header)?;
    let mut aliases: Vec<HeaderName> = Vec::with_capacity(config.aliases.len());
    for (i, alias) in config.aliases.iter().enumerate() {
        let key = format!("aliases[{i}]");
        let name = header_name(&key, alias)?;
        if name == header || aliases.contains(&name) {
            return Err(ConfigError::new(key, format!("\"{name}\" is listed twice")));
        }
        aliases.push(name);
    }

    let charset = Charset::parse(&config.charset)?;
    let validator = Validator::new(charset, config.max_length)?;

    match &generator {
        Generator::Format(format) => {
            if !(b"0123456789abcdef-".iter().all(|&b| charset.contains(b))) {
                return Err(ConfigError::new(
                    "charset",
                    format!(
                        "must allow the characters of the generated {format:?} ids (0-9, a-f and \
                         '-'), or every request would look invalid"
                    ),
                ));
            }
            if config.max_length < uuid::fmt::Hyphenated::LENGTH {
                return Err(ConfigError::new(
                    "max_length",
                    format!(
                        "must be at least {} to fit the generated {format:?} ids",
                        uuid::fmt::Hyphenated::LENGTH
                    ),
                ));
            }
        }
        Generator::Custom(make) => {
            let sample = make.make_request_id();
            if !validator.is_valid(sample.header_value().as_bytes()) {
                return Err(ConfigError::new(
                    "generator",
                    format!(
                        "the custom generator made an id ({} bytes) that the charset and \
                         max_length refuse",
                        sample.header_value().len()
                    ),
                ));
            }
        }
    }

    let trust = match config.trust {
        TrustPolicy::Always | TrustPolicy::Never if !config.trusted_peers.is_empty() => {
            return Err(ConfigError::new(
                "trusted_peers",
                "is only used with trust = \"trusted_peers\"",
            ));
        }
        TrustPolicy::Always => Trust::Always,
        TrustPolicy::Never => Trust::Never,
        TrustPolicy::TrustedPeers => {
            if config.trusted_peers.is_empty() {
                return Err(ConfigError::new(
                    "trusted_peers",
                    "must list at least one range with trust = \"trusted_peers\"",
                ));
            }
            let mut ranges = Vec::with_capacity(config.trusted_peers.len());
            for (i, text) in config.trusted_peers.iter().enumerate() {
                let cidr = Cidr::parse(text).map_err(|e| {
                    ConfigError::new(format!("trusted_peers[{i}]"), e.problem().to_owned())
                })?;
                ranges.push(cidr);
            }
            Trust::Peers(TrustedPeers::new(ranges))
        }
    };

    Ok(Settings {
        header,
        aliases: aliases.into_boxed_slice(),
        generator,
        validator,
        trust,
        mode: config.mode,
        span_level: config.span_level,
        record_on_current_span: config.record_on_current_span,
        metrics: std::sync::OnceLock::new(),
        warned_no_peer: AtomicBool::new(false),
        warned_bad_generated: AtomicBool::new(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestId;

    fn err(config: &RequestIdConfig) -> ConfigError {
        RequestIdLayer::from_config(config.clone()).unwrap_err()
    }

    #[test]
    fn defaults_build() {
        RequestIdConfig::default().validate().unwrap();
        let layer = RequestIdLayer::from_config(RequestIdConfig::default()).unwrap();
        assert_eq!(layer.header_name(), "x-request-id");
    }

    #[test]
    fn every_bad_field_is_named() {
        let base = RequestIdConfig::default;
        let cases: Vec<(RequestIdConfig, &str)> = vec![
            (
                RequestIdConfig {
                    header: "bad header".into(),
                    ..base()
                },
                "request_id.header",
            ),
            (
                RequestIdConfig {
                    header: String::new(),
                    ..base()
                },
                "request_id.header",
            ),
            (
                RequestIdConfig {
                    aliases: vec!["x-request-id".into()],
                    ..base()
                },
                "request_id.aliases[0]",
            ),
            (
                RequestIdConfig {
                    aliases: vec!["a".into(), "A".into()],
                    ..base()
                },
                "request_id.aliases[1]",
            ),
            (
                RequestIdConfig {
                    charset: "a b".into(),
                    ..base()
                },
                "request_id.charset",
            ),
            (
                RequestIdConfig {
                    charset: "A-Z".into(),
                    ..base()
                },
                "request_id.charset",
            ),
            (
                RequestIdConfig {
                    max_length: 0,
                    ..base()
                },
                "request_id.max_length",
            ),
            (
                RequestIdConfig {
                    max_length: 20,
                    ..base()
                },
                "request_id.max_length",
            ),
            (
                RequestIdConfig {
                    max_length: 5000,
                    ..base()
                },
                "request_id.max_length",
            ),
            (
                RequestIdConfig {
                    trust: TrustPolicy::TrustedPeers,
                    ..base()
                },
                "request_id.trusted_peers",
            ),
            (
                RequestIdConfig {
                    trusted_peers: vec!["10.0.0.0/8".into()],
                    ..base()
                },
                "request_id.trusted_peers",
            ),
            (
                RequestIdConfig {
                    trust: TrustPolicy::TrustedPeers,
                    trusted_peers: vec!["10.0.0.0/8".into(), "nope".into()],
                    ..base()
                },
                "request_id.trusted_peers[1]",
            ),
        ];
        for (config, key) in cases {
            assert_eq!(err(&config).key(), key, "{config:?}");
        }
    }

    #[test]
    fn custom_generators_must_make_valid_ids() {
        let bad = RequestIdLayer::builder()
            .generator(|| RequestId::new("has/slash").unwrap())
            .build()
            .unwrap_err();
        assert_eq!(bad.key(), "request_id.generator");
        // A short custom id works with a short max_length and narrow charset.
        RequestIdLayer::builder()
            .generator(|| RequestId::new("n1").unwrap())
            .charset("a-z0-9")
            .max_length(8)
            .build()
            .unwrap();
        // Choosing a format afterwards drops the custom generator (and its exemption).
        let err = RequestIdLayer::builder()
            .generator(|| RequestId::new("n1").unwrap())
            .max_length(8)
            .format(IdFormat::UuidV4)
            .build()
            .unwrap_err();
        assert_eq!(err.key(), "request_id.max_length");
    }

    #[test]
    fn well_known_names_are_static() {
        let name = header_name("header", "X-Correlation-ID").unwrap();
        assert_eq!(name, "x-correlation-id");
        let custom = header_name("header", "X-My-Id").unwrap();
        assert_eq!(custom, "x-my-id");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_with_defaults() {
        let config: RequestIdConfig = serde_json::from_str(
            r#"{"trust":"trusted_peers","trusted_peers":["10.0.0.0/8"],"format":"uuid_v4",
                "mode":"observe_only","span_level":"debug"}"#,
        )
        .unwrap();
        assert_eq!(config.format, IdFormat::UuidV4);
        assert_eq!(config.mode, EnforcementMode::ObserveOnly);
        assert_eq!(config.span_level, SpanLevel::Debug);
        assert_eq!(config.max_length, DEFAULT_MAX_LENGTH);
        config.validate().unwrap();
        assert!(serde_json::from_str::<RequestIdConfig>(r#"{"unknown":1}"#).is_err());
    }
}
