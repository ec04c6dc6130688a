//! Trace export: the `tracing` subscriber with an OpenTelemetry layer that exports over OTLP,
//! configured by the standard `OTEL_*` environment variables, through a bounded batch queue
//! that never slows requests down.

use std::{
    fmt,
    sync::{
        Arc, Mutex, Once,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry::{InstrumentationScope, KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    resource::TelemetryResourceDetector,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
        SpanExporter, SpanProcessor,
    },
};
use palisade_core::ConfigError;
use tracing::Subscriber;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::{FilterExt, LevelFilter, filter_fn},
    layer::SubscriberExt,
    registry::LookupSpan,
};

use crate::{
    error::TelemetryError,
    log_fields::ServerSpanLog,
    log_format::{ContextJson, ContextText, json_format},
    metrics::{EXPORT_FAILURES, SPAN_QUEUE, SPANS_DROPPED, SPANS_EXPORTED, describe_export},
};

const SECTION: &str = "tracing";

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub enum OtlpProtocol {
    /// gRPC (tonic), port 4317. The default (feature `otlp-grpc`, on by default).
    #[cfg_attr(feature = "serde", serde(rename = "grpc"))]
    Grpc,
    /// HTTP with protobuf bodies, port 4318 (feature `otlp-http`, off by default).
    #[cfg_attr(feature = "serde", serde(rename = "http/protobuf"))]
    HttpProtobuf,
}

impl Default for OtlpProtocol {
    /// `Grpc`, or `HttpProtobuf` when only the `otlp-http` feature is on. (The OpenTelemetry
    /// specification's default is `http/protobuf`; gRPC is this crate's, because HTTP export
    /// is an optional feature.)
    fn default() -> Self {
        if cfg!(all(feature = "otlp-http", not(feature = "otlp-grpc"))) {
            Self::HttpProtobuf
        } else {
            Self::Grpc
        }
    }
}

impl OtlpProtocol {
    /// The collector's default endpoint for this protocol.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Self::Grpc => "http://localhost:4317",
            Self::HttpProtobuf => "http://localhost:4318/v1/traces",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Which traces are recorded and exported (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
///
/// With the `serde` feature it deserializes from the variable's names: `"always_on"`,
/// `"parentbased_always_on"`, `{ "parentbased_traceidratio" = 0.1 }`, ...
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub enum TraceSampler {
    /// `always_on`: every trace.
    #[cfg_attr(feature = "serde", serde(rename = "always_on"))]
    AlwaysOn,
    /// `always_off`: none.
    #[cfg_attr(feature = "serde", serde(rename = "always_off"))]
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, by trace id, ignoring the caller's decision.
    #[cfg_attr(feature = "serde", serde(rename = "traceidratio"))]
    TraceIdRatio(f64),
    /// `parentbased_always_on`: the caller's decision, every new trace. The default.
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "parentbased_always_on"))]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: the caller's decision, no new trace.
    #[cfg_attr(feature = "serde", serde(rename = "parentbased_always_off"))]
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: the caller's decision, this fraction of new traces.
    #[cfg_attr(feature = "serde", serde(rename = "parentbased_traceidratio"))]
    ParentBasedTraceIdRatio(f64),
}

impl TraceSampler {
    fn ratio(self) -> Option<f64> {
        match self {
            Self::TraceIdRatio(r) | Self::ParentBasedTraceIdRatio(r) => Some(r),
            _ => None,
        }
    }

    fn sampler(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// How [`TracingConfig::init`]'s logger writes lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal (the default).
    #[default]
    Text,
    /// One JSON object per line (`tracing-subscriber`'s JSON formatter): the event's fields at
    /// the top level beside `timestamp`, `level`, `target` and `message`, and the fields of the
    /// current span under `span` (the server span's `request_id`, and its `trace_id` when the
    /// telemetry layer records it).
    Json,
}

/// The configuration of trace export and of the subscriber [`init`] installs.
///
/// [`TracingConfig::from_env`] reads the standard variables:
///
/// | variable | field | default |
/// |---|---|---|
/// | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | `enabled = false` | enabled (`otlp`) |
/// | `OTEL_SERVICE_NAME` (else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) | `service_name` | `unknown_service` |
/// | `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values percent-decoded) | `resource_attributes` | none |
/// | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`) | `protocol` | `grpc` |
/// | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is), `OTEL_EXPORTER_OTLP_ENDPOINT` (HTTP: plus `/v1/traces`) | `endpoint` | `http://localhost:4317`, HTTP `http://localhost:4318/v1/traces` |
/// | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) | `export_timeout` | 10 s |
/// | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `sampler` | `parentbased_always_on` |
/// | `OTEL_BSP_MAX_QUEUE_SIZE` | `max_queue_size` | 2048 |
/// | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | `max_export_batch_size` | 512 |
/// | `OTEL_BSP_SCHEDULE_DELAY` (ms) | `scheduled_delay` | 5 s |
/// | `RUST_LOG` | `log_filter` (stdout logs only) | `info` |
/// | (none: set it from `[telemetry] log_format`) | `log_format` | text |
///
/// `OTEL_EXPORTER_OTLP_HEADERS` (and the `_TRACES_` variant) and `OTEL_EXPORTER_OTLP_COMPRESSION`
/// are read by `opentelemetry-otlp` itself. A value that does not parse is a
/// [`ConfigError`] naming the variable, not a silent default.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[allow(clippy::struct_excessive_bools)] // independent switches, each documented
pub struct TracingConfig {
    /// Export spans. Off, [`TracingConfig::build`] makes a guard whose layer does nothing.
    pub enabled: bool,
    /// `service.name`.
    pub service_name: String,
    /// Further resource attributes (`deployment.environment.name`, `service.version`, ...).
    pub resource_attributes: Vec<(String, String)>,
    /// The OTLP transport.
    pub protocol: OtlpProtocol,
    /// Where spans go: the collector for gRPC, the full URL (ending in `/v1/traces`) for HTTP.
    /// `None`: the protocol's default endpoint.
    pub endpoint: Option<String>,
    /// The longest one export call may take (each call carries one batch).
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub export_timeout: Duration,
    /// Which traces are recorded.
    pub sampler: TraceSampler,
    /// The most spans waiting for export; beyond it spans are dropped and counted, so a slow or
    /// absent collector never grows memory. 1 to 1 000 000.
    pub max_queue_size: usize,
    /// The most spans per export call, at most `max_queue_size`.
    pub max_export_batch_size: usize,
    /// How often the queue is exported when it has not filled a batch.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub scheduled_delay: Duration,
    /// The least time between two warnings about failing exports or dropped spans. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub warn_interval: Duration,
    /// The `EnvFilter` directives of the stdout logger [`TracingConfig::init`] installs
    /// (`RUST_LOG`). Default `info`. Logs only: exported spans follow
    /// [`span_filter`](Self::span_filter), so `RUST_LOG=warn` does not stop tracing.
    pub log_filter: String,
    /// The `EnvFilter` directives of the spans (and span events) exported to OpenTelemetry.
    /// Default `info`, which covers the server span at its default level.
    pub span_filter: String,
    /// Whether [`TracingConfig::init`] also logs to stdout (`tracing_subscriber::fmt`, with
    /// colours on a terminal). Default `true`.
    pub log_to_stdout: bool,
    /// Text or JSON lines. Default text.
    pub log_format: LogFormat,
    /// Record source code locations (`code.file.path`, `code.line.number`) on spans. Default
    /// `false`: the server span's location would be this crate's.
    pub span_locations: bool,
    /// Whether lines logged inside a request show every attribute of the server span. Default
    /// `false`: lines show `HTTP request{request_id=.. trace_id=..}`, the two fields that join
    /// a line to its request and its trace; the other attributes are for the trace exporter and
    /// the access log. Formatting all of them costs about 16 000 instructions per request,
    /// whether or not the request logs anything. With export off (`enabled = false`) and this
    /// `false`, the logger names the request from the current request id and does not ask for
    /// the server span, so no span is made per request unless another layer wants one.
    pub log_span_attributes: bool,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            service_name: "unknown_service".to_owned(),
            resource_attributes: Vec::new(),
            protocol: OtlpProtocol::default(),
            endpoint: None,
            export_timeout: Duration::from_secs(10),
            sampler: TraceSampler::default(),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(5),
            warn_interval: Duration::from_secs(60),
            log_filter: "info".to_owned(),
            span_filter: "info".to_owned(),
            log_to_stdout: true,
            log_format: LogFormat::Text,
            span_locations: false,
            log_span_attributes: false,
        }
    }
}

/// Decodes `%XX` escapes (`OTEL_RESOURCE_ATTRIBUTES` values are percent-encoded).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_resource_attributes(value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let err = |problem: String| ConfigError::new("OTEL_RESOURCE_ATTRIBUTES", problem);
    let mut out = Vec::new();
    for pair in value.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            return Err(err(format!("{pair:?} is not key=value")));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(err(format!("{pair:?} has an empty key")));
        }
        let value = percent_decode(value.trim())
            .ok_or_else(|| err(format!("{pair:?} has a bad percent-encoding")))?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn parse_millis(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ConfigError::new(var, format!("{value:?} is not a number of milliseconds")))
}

fn parse_count(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| ConfigError::new(var, format!("{value:?} is not a whole number")))
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        other => Err(ConfigError::new(
            var,
            format!("{other:?} is not true or false"),
        )),
    }
}

impl TracingConfig {
    /// The configuration from the process environment (see the table above).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable whose value does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration from any variable lookup (tests, configuration files that mirror the
    /// environment).
    ///
    /// ```
    /// use palisade_telemetry::{OtlpProtocol, TraceSampler, TracingConfig};
    ///
    /// let env = [
    ///     ("OTEL_SERVICE_NAME", "checkout"),
    ///     ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=pay%20ments"),
    ///     ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ///     ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
    ///     ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
    /// ];
    /// let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    /// let config = TracingConfig::from_lookup(lookup).unwrap();
    /// assert_eq!(config.service_name, "checkout");
    /// assert_eq!(config.sampler, TraceSampler::ParentBasedTraceIdRatio(0.25));
    /// assert_eq!(config.protocol, OtlpProtocol::Grpc);
    /// assert_eq!(config.endpoint.as_deref(), Some("http://collector:4317"));
    /// assert_eq!(config.resource_attributes[1], ("team".to_owned(), "pay ments".to_owned()));
    ///
    /// let bad = |name: &str| (name == "OTEL_TRACES_SAMPLER_ARG").then(|| "2".to_owned())
    ///     .or_else(|| (name == "OTEL_TRACES_SAMPLER").then(|| "traceidratio".to_owned()));
    /// assert_eq!(TracingConfig::from_lookup(bad).unwrap_err().key(), "OTEL_TRACES_SAMPLER_ARG");
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable whose value does not parse.
    #[allow(clippy::too_many_lines)] // one block per variable, in the table's order
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        if let Some(v) = var("OTEL_SDK_DISABLED") {
            config.enabled = !parse_bool("OTEL_SDK_DISABLED", &v)?;
        }
        if let Some(v) = var("OTEL_TRACES_EXPORTER") {
            match v.trim() {
                "otlp" => {}
                "none" => config.enabled = false,
                other => {
                    return Err(ConfigError::new(
                        "OTEL_TRACES_EXPORTER",
                        format!("{other:?} is not supported: use otlp or none"),
                    ));
                }
            }
        }
        if let Some(v) = var("OTEL_RESOURCE_ATTRIBUTES") {
            let mut attributes = parse_resource_attributes(&v)?;
            if let Some(i) = attributes.iter().position(|(k, _)| k == "service.name") {
                config.service_name = attributes.remove(i).1;
            }
            config.resource_attributes = attributes;
        }
        if let Some(v) = var("OTEL_SERVICE_NAME") {
            v.trim().clone_into(&mut config.service_name);
        }
        let (protocol_var, protocol) = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(v) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(v)),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                var("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ),
        };
        if let Some(v) = protocol {
            config.protocol = match v.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                other => {
                    return Err(ConfigError::new(
                        protocol_var,
                        format!("{other:?} is not supported: use grpc or http/protobuf"),
                    ));
                }
            };
        }
        if let Some(v) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            config.endpoint = Some(v.trim().to_owned());
        } else if let Some(v) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = v.trim();
            config.endpoint = Some(match config.protocol {
                OtlpProtocol::Grpc => base.to_owned(),
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            });
        }
        if let Some(v) = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            config.export_timeout = parse_millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &v)?;
        } else if let Some(v) = var("OTEL_EXPORTER_OTLP_TIMEOUT") {
            config.export_timeout = parse_millis("OTEL_EXPORTER_OTLP_TIMEOUT", &v)?;
        }
        let ratio = match var("OTEL_TRACES_SAMPLER_ARG") {
            Some(v) => {
                let r = v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r));
                Some(r.ok_or_else(|| {
                    ConfigError::new(
                        "OTEL_TRACES_SAMPLER_ARG",
                        format!("{v:?} is not a ratio from 0 to 1"),
                    )
                })?)
            }
            None => None,
        };
        if let Some(v) = var("OTEL_TRACES_SAMPLER") {
            config.sampler = match v.trim() {
                "always_on" => TraceSampler::AlwaysOn,
                "always_off" => TraceSampler::AlwaysOff,
                "traceidratio" => TraceSampler::TraceIdRatio(ratio.unwrap_or(1.0)),
                "parentbased_always_on" => TraceSampler::ParentBasedAlwaysOn,
                "parentbased_always_off" => TraceSampler::ParentBasedAlwaysOff,
                "parentbased_traceidratio" => {
                    TraceSampler::ParentBasedTraceIdRatio(ratio.unwrap_or(1.0))
                }
                other => {
                    return Err(ConfigError::new(
                        "OTEL_TRACES_SAMPLER",
                        format!(
                            "{other:?} is not supported: use always_on, always_off, \
                             traceidratio, parentbased_always_on, parentbased_always_off or \
                             parentbased_traceidratio"
                        ),
                    ));
                }
            };
        }
        if let Some(v) = var("OTEL_BSP_MAX_QUEUE_SIZE") {
            config.max_queue_size = parse_count("OTEL_BSP_MAX_QUEUE_SIZE", &v)?;
        }
        if let Some(v) = var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            config.max_export_batch_size = parse_count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v)?;
        } else {
            // As the SDK does: a smaller queue caps the default batch.
            config.max_export_batch_size = config.max_export_batch_size.min(config.max_queue_size);
        }
        if let Some(v) = var("OTEL_BSP_SCHEDULE_DELAY") {
            config.scheduled_delay = parse_millis("OTEL_BSP_SCHEDULE_DELAY", &v)?;
        }
        if let Some(v) = var("RUST_LOG") {
            config.log_filter = v;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] keyed `tracing.<field>`: an empty service name, an endpoint that is not
    /// an `http://` or `https://` URL, a protocol whose cargo feature is off, a sampler ratio
    /// outside 0..=1, a queue or batch size of 0 (or a batch above the queue, a queue above a
    /// million), a zero delay, timeout or warning interval, a log filter that does not parse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_transport()?;
        self.validate_pipeline()
    }

    fn validate_transport(&self) -> Result<(), ConfigError> {
        let check = || {
            let compiled = match self.protocol {
                OtlpProtocol::Grpc => cfg!(feature = "otlp-grpc"),
                OtlpProtocol::HttpProtobuf => cfg!(feature = "otlp-http"),
            };
            if !compiled {
                return Err(ConfigError::new(
                    "protocol",
                    format!(
                        "{} needs palisade-telemetry's cargo feature {}",
                        self.protocol.name(),
                        match self.protocol {
                            OtlpProtocol::Grpc => "otlp-grpc",
                            OtlpProtocol::HttpProtobuf => "otlp-http",
                        }
                    ),
                ));
            }
            if let Some(endpoint) = &self.endpoint {
                let uri = endpoint.parse::<http::Uri>().ok().filter(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
                });
                if uri.is_none() {
                    return Err(ConfigError::new(
                        "endpoint",
                        format!("{endpoint:?} is not an http:// or https:// URL"),
                    ));
                }
            }
            Ok(())
        };
        check().map_err(|e: ConfigError| e.within(SECTION))
    }

    /// Everything but the transport (which [`TracingConfig::build_with_exporter`] does not use).
    fn validate_pipeline(&self) -> Result<(), ConfigError> {
        let check = || {
            if self.service_name.trim().is_empty() {
                return Err(ConfigError::new("service_name", "must not be empty"));
            }
            if let Some(r) = self.sampler.ratio()
                && !(0.0..=1.0).contains(&r)
            {
                return Err(ConfigError::new(
                    "sampler",
                    format!("the ratio {r} is not from 0 to 1"),
                ));
            }
            if !(1..=1_000_000).contains(&self.max_queue_size) {
                return Err(ConfigError::new(
                    "max_queue_size",
                    format!("{} is not from 1 to 1000000", self.max_queue_size),
                ));
            }
            if self.max_export_batch_size == 0 || self.max_export_batch_size > self.max_queue_size {
                return Err(ConfigError::new(
                    "max_export_batch_size",
                    format!(
                        "{} is not from 1 to max_queue_size ({})",
                        self.max_export_batch_size, self.max_queue_size
                    ),
                ));
            }
            for (key, value) in [
                ("export_timeout", self.export_timeout),
                ("scheduled_delay", self.scheduled_delay),
                ("warn_interval", self.warn_interval),
            ] {
                if value.is_zero() {
                    return Err(ConfigError::new(key, "must be above zero"));
                }
            }
            for (key, directives) in [
                ("log_filter", &self.log_filter),
                ("span_filter", &self.span_filter),
            ] {
                if let Err(e) = EnvFilter::try_new(directives) {
                    return Err(ConfigError::new(
                        key,
                        format!("{directives:?} does not parse: {e}"),
                    ));
                }
            }
            Ok(())
        };
        check().map_err(|e: ConfigError| e.within(SECTION))
    }

    /// Builds the exporter pipeline without installing anything: add [`TracingGuard::layer`] to
    /// a subscriber of your own. Keep the guard; dropping it (or
    /// [`TracingGuard::shutdown`]) flushes and stops export.
    ///
    /// # Errors
    ///
    /// [`TelemetryError::Config`], [`TelemetryError::NoRuntime`] (gRPC export needs a Tokio
    /// runtime), [`TelemetryError::Exporter`].
    pub fn build(&self) -> Result<TracingGuard, TelemetryError> {
        self.validate()?;
        if !self.enabled {
            return Ok(self.disabled());
        }
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| self.protocol.default_endpoint().to_owned());
        let exporter = match self.protocol {
            OtlpProtocol::Grpc => grpc_exporter(&endpoint, self.export_timeout)?,
            OtlpProtocol::HttpProtobuf => http_exporter(&endpoint, self.export_timeout)?,
        };
        Ok(self.pipeline(exporter))
    }

    /// Builds the pipeline (sampler, resource, bounded batch queue, counters, rate-limited
    /// warnings) around an exporter of your own instead of OTLP: the SDK's in-memory exporter in
    /// tests, a vendor exporter. `protocol`, `endpoint` and `export_timeout` are not used.
    ///
    /// # Errors
    ///
    /// [`TelemetryError::Config`] for a bad configuration.
    pub fn build_with_exporter<E>(&self, exporter: E) -> Result<TracingGuard, TelemetryError>
    where
        E: SpanExporter + 'static,
    {
        self.validate_pipeline()?;
        if !self.enabled {
            return Ok(self.disabled());
        }
        Ok(self.pipeline(exporter))
    }

    fn disabled(&self) -> TracingGuard {
        TracingGuard {
            provider: None,
            tracer: None,
            stats: Arc::new(Stats::new(self.max_queue_size, self.warn_interval)),
            span_locations: self.span_locations,
            span_filter: self.span_filter.clone(),
        }
    }

    fn pipeline<E>(&self, exporter: E) -> TracingGuard
    where
        E: SpanExporter + 'static,
    {
        let stats = Arc::new(Stats::new(self.max_queue_size, self.warn_interval));
        let counting = CountingExporter {
            inner: exporter,
            stats: stats.clone(),
        };
        let batch = BatchSpanProcessor::builder(counting)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(self.max_queue_size)
                    .with_max_export_batch_size(self.max_export_batch_size)
                    .with_scheduled_delay(self.scheduled_delay)
                    .build(),
            )
            .build();
        let processor = BoundedProcessor {
            inner: batch,
            stats: stats.clone(),
            shut_down: AtomicBool::new(false),
        };
        let resource = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(
                self.resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(self.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(self.sampler.sampler())
            .with_resource(resource)
            .build();
        let tracer = provider.tracer_with_scope(
            InstrumentationScope::builder("palisade_telemetry")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        TracingGuard {
            provider: Some(provider),
            tracer: Some(tracer),
            stats,
            span_locations: self.span_locations,
            span_filter: self.span_filter.clone(),
        }
    }

    /// The logger [`init`](Self::init) installs, writing to `writer` instead of stdout: the
    /// [`log_format`](Self::log_format), filtered by [`log_filter`](Self::log_filter). For a
    /// subscriber of your own (add [`TracingGuard::layer`] beside it), or to capture lines.
    ///
    /// [`enabled`](Self::enabled) tells it whether the subscriber exports spans. `false`: it
    /// names a line's request from the current request id and does not ask for the server span
    /// (unless `log_filter` has a span directive). With an OpenTelemetry layer of your own in the
    /// subscriber, build the logger from a configuration with `enabled = true` (it needs no
    /// [`build`](Self::build)), so that it shows the server span and its `trace_id`.
    ///
    /// ```
    /// use palisade_telemetry::{LogFormat, TracingConfig};
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let config = TracingConfig { log_format: LogFormat::Json, ..TracingConfig::default() };
    /// let subscriber = tracing_subscriber::Registry::default()
    ///     .with(config.log_layer(std::io::stderr).unwrap());
    /// tracing::subscriber::with_default(subscriber, || tracing::info!(answer = 42, "logged"));
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `log_filter` does not parse.
    pub fn log_layer<S, W>(
        &self,
        writer: W,
    ) -> Result<Box<dyn Layer<S> + Send + Sync + 'static>, ConfigError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        self.logger(writer, false)
    }

    fn logger<S, W>(
        &self,
        writer: W,
        ansi: bool,
    ) -> Result<Box<dyn Layer<S> + Send + Sync + 'static>, ConfigError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let filter = EnvFilter::try_new(&self.log_filter)
            .map_err(|e| ConfigError::new("tracing.log_filter", e.to_string()))?;
        let all = self.log_span_attributes;
        // With no spans exported, the logger names a line's request from the current request
        // id and does not ask for the server span: unless another layer does, no span is made
        // per request (see `log_format`). Exported, the span exists anyway and the logger shows
        // it with its trace id.
        // A span directive in the log filter (`[HTTP request{...}]=debug`) needs the span.
        let context_only = !all && !self.enabled && !self.log_filter.contains('[');
        // The `EnvFilter`'s level as the hint: an unhinted filter function would make the
        // pair's hint "anything", and every `debug!` in the process would be checked at its
        // call site instead of against the global level.
        let hint = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
        // The level check keeps the hint true (`tracing-subscriber` asserts it).
        let filter = filter_fn(move |meta| {
            *meta.level() <= hint && !(context_only && crate::service::is_server_span(meta))
        })
        .with_max_level_hint(hint)
        .and(filter);
        Ok(match self.log_format {
            LogFormat::Text => {
                let logger = tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(writer);
                if all {
                    logger.with_filter(filter).boxed()
                } else {
                    ServerSpanLog::text(logger.event_format(ContextText::new()))
                        .with_filter(filter)
                        .boxed()
                }
            }
            LogFormat::Json => {
                let logger = tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(json_format())
                    .with_writer(writer);
                if all {
                    logger.with_filter(filter).boxed()
                } else {
                    ServerSpanLog::json(logger.event_format(ContextJson::new()))
                        .with_filter(filter)
                        .boxed()
                }
            }
        })
    }

    /// Builds the pipeline and installs the global `tracing` subscriber: an `EnvFilter`
    /// ([`log_filter`](Self::log_filter)), a stdout logger when
    /// [`log_to_stdout`](Self::log_to_stdout), and the OpenTelemetry layer; sets the global
    /// OpenTelemetry tracer provider too, for libraries that use the OpenTelemetry API directly.
    ///
    /// # Errors
    ///
    /// As [`TracingConfig::build`], and [`TelemetryError::AlreadyInstalled`] when a global
    /// subscriber is already set.
    pub fn init(&self) -> Result<TracingGuard, TelemetryError> {
        let guard = self.build()?;
        let stdout = if self.log_to_stdout {
            use std::io::IsTerminal;
            Some(self.logger(std::io::stdout, std::io::stdout().is_terminal())?)
        } else {
            None
        };
        let subscriber = Registry::default().with(stdout).with(guard.layer());
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|_| TelemetryError::AlreadyInstalled("tracing subscriber"))?;
        if let Some(provider) = &guard.provider {
            opentelemetry::global::set_tracer_provider(provider.clone());
        }
        Ok(guard)
    }
}

/// Installs tracing from the `OTEL_*` environment: [`TracingConfig::from_env`] then
/// [`TracingConfig::init`]. Call it once, early in `main`, inside the Tokio runtime, and keep the
/// guard until the server has drained:
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), palisade_telemetry::TelemetryError> {
/// let tracing = palisade_telemetry::init()?;
/// // ... serve ...
/// tracing.shutdown().await?; // flush the spans still queued
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`TracingConfig::from_env`] and [`TracingConfig::init`].
pub fn init() -> Result<TracingGuard, TelemetryError> {
    TracingConfig::from_env()?.init()
}

/// The OTLP exporter.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
type Exporter = opentelemetry_otlp::SpanExporter;

/// Stands in for the OTLP exporter when no transport feature is on; validation refuses every
/// protocol then, so it is never built.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
type Exporter = NoTransport;

#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
#[derive(Debug)]
struct NoTransport;

#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
impl SpanExporter for NoTransport {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(feature = "otlp-grpc")]
fn grpc_exporter(endpoint: &str, timeout: Duration) -> Result<Exporter, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    // tonic's channel spawns its connection task on the current runtime.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TelemetryError::NoRuntime);
    }
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

#[cfg(not(feature = "otlp-grpc"))]
fn grpc_exporter(_: &str, _: Duration) -> Result<Exporter, TelemetryError> {
    Err(ConfigError::new("tracing.protocol", "grpc needs the otlp-grpc feature").into())
}

#[cfg(feature = "otlp-http")]
fn http_exporter(endpoint: &str, timeout: Duration) -> Result<Exporter, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

#[cfg(not(feature = "otlp-http"))]
fn http_exporter(_: &str, _: Duration) -> Result<Exporter, TelemetryError> {
    Err(ConfigError::new(
        "tracing.protocol",
        "http/protobuf needs the otlp-http feature",
    )
    .into())
}

/// Counters shared by the processor (on the request path) and the exporter (on the export
/// thread).
#[derive(Debug)]
struct Stats {
    /// Spans accepted and not yet handed to an export call.
    queued: AtomicUsize,
    /// Spans in the export call running now.
    exporting: AtomicUsize,
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    export_failures: AtomicU64,
    max_queue_size: usize,
    warn_interval: Duration,
    reporting: Mutex<Reporting>,
    described: Once,
}

/// What was last pushed to the metrics recorder and the log.
#[derive(Debug, Default)]
struct Reporting {
    exported: u64,
    dropped_queue_full: u64,
    dropped_export_failed: u64,
    export_failures: u64,
    last_warning: Option<Instant>,
    dropped_at_last_warning: u64,
    failures_at_last_warning: u64,
}

impl Stats {
    fn new(max_queue_size: usize, warn_interval: Duration) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            exporting: AtomicUsize::new(0),
            exported: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_export_failed: AtomicU64::new(0),
            export_failures: AtomicU64::new(0),
            max_queue_size,
            warn_interval,
            reporting: Mutex::new(Reporting::default()),
            described: Once::new(),
        }
    }

    fn snapshot(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_export_failed: self.dropped_export_failed.load(Ordering::Relaxed),
            export_failures: self.export_failures.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            exporting: self.exporting.load(Ordering::Relaxed),
            max_queue_size: self.max_queue_size,
        }
    }

    /// Pushes the counts to the metrics recorder, and warns (at most once per interval) when
    /// exports failed or spans were dropped since the last warning. Runs on the export thread,
    /// never on the request path.
    fn report(&self, error: Option<&OTelSdkError>) {
        self.described.call_once(describe_export);
        let now = self.snapshot();
        let mut r = self
            .reporting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        metrics::counter!(SPANS_EXPORTED).increment(now.exported - r.exported);
        metrics::counter!(SPANS_DROPPED, "reason" => "queue_full")
            .increment(now.dropped_queue_full - r.dropped_queue_full);
        metrics::counter!(SPANS_DROPPED, "reason" => "export_failed")
            .increment(now.dropped_export_failed - r.dropped_export_failed);
        metrics::counter!(EXPORT_FAILURES).increment(now.export_failures - r.export_failures);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(SPAN_QUEUE).set(now.queued as f64);
        r.exported = now.exported;
        r.dropped_queue_full = now.dropped_queue_full;
        r.dropped_export_failed = now.dropped_export_failed;
        r.export_failures = now.export_failures;

        let dropped = now.dropped_queue_full + now.dropped_export_failed;
        let new_drops = dropped - r.dropped_at_last_warning;
        let new_failures = now.export_failures - r.failures_at_last_warning;
        let due = r
            .last_warning
            .is_none_or(|at| at.elapsed() >= self.warn_interval);
        if (new_drops > 0 || new_failures > 0) && due {
            r.last_warning = Some(Instant::now());
            r.dropped_at_last_warning = dropped;
            r.failures_at_last_warning = now.export_failures;
            tracing::warn!(
                target: "palisade_telemetry",
                error = error.map(tracing::field::display),
                failed_exports = new_failures,
                dropped_spans = new_drops,
                queued = now.queued,
                max_queue_size = now.max_queue_size,
                "OpenTelemetry span export is failing or falling behind: spans are dropped, \
                 requests are not affected (next warning in {} s at the earliest)",
                self.warn_interval.as_secs()
            );
        }
    }
}

/// A snapshot of the export pipeline's counters ([`TracingGuard::stats`]). Every span that ended
/// (and was sampled) is in exactly one of `exported`, `dropped_queue_full`,
/// `dropped_export_failed`, `queued` and `exporting` (the counters are read one by one, so a
/// snapshot taken during an export may be off by that export's batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (the collector was slow or down).
    pub dropped_queue_full: u64,
    /// Spans lost in failed export calls.
    pub dropped_export_failed: u64,
    /// Failed export calls.
    pub export_failures: u64,
    /// Spans waiting for export now; never above `max_queue_size`.
    pub queued: usize,
    /// Spans in the export call running now; never above the batch size. Memory held by spans
    /// is bounded by `max_queue_size` plus one batch.
    pub exporting: usize,
    /// The queue's capacity.
    pub max_queue_size: usize,
}

/// Bounds the batch processor's queue with our own count (decremented when spans leave for an
/// export call), so a drop is counted here, on the request path, with one atomic add, and the
/// SDK queue never reaches its own (silent) limit.
#[derive(Debug)]
struct BoundedProcessor {
    inner: BatchSpanProcessor,
    stats: Arc<Stats>,
    shut_down: AtomicBool,
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.shut_down.load(Ordering::Relaxed) {
            return;
        }
        let stats = &self.stats;
        if stats.queued.fetch_add(1, Ordering::AcqRel) >= stats.max_queue_size {
            stats.queued.fetch_sub(1, Ordering::AcqRel);
            stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.shut_down.store(true, Ordering::Relaxed);
        let result = self.inner.shutdown_with_timeout(timeout);
        self.stats.report(None);
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts what the OTLP exporter does and reports failures itself (rate-limited), so the SDK
/// does not log every failed export.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    stats: Arc<Stats>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let len = batch.len();
        self.stats.exporting.fetch_add(len, Ordering::AcqRel);
        self.stats.queued.fetch_sub(len, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        let n = len as u64;
        if result.is_ok() {
            self.stats.exported.fetch_add(n, Ordering::Relaxed);
        } else {
            self.stats.export_failures.fetch_add(1, Ordering::Relaxed);
            self.stats
                .dropped_export_failed
                .fetch_add(n, Ordering::Relaxed);
        }
        self.stats.exporting.fetch_sub(len, Ordering::AcqRel);
        self.stats.report(result.as_ref().err());
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The running trace export pipeline. Dropping it flushes the queue and stops export; prefer
/// [`TracingGuard::shutdown`] in async code (it does not block the runtime).
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    stats: Arc<Stats>,
    span_locations: bool,
    span_filter: String,
}

impl fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingGuard")
            .field("enabled", &self.provider.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TracingGuard {
    /// Whether spans are exported (`false` when the configuration turned export off).
    pub fn is_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The OpenTelemetry layer for a `tracing` subscriber of your own
    /// (`Registry::default().with(guard.layer())`); it does nothing when export is off.
    ///
    /// It carries its own filter, [`TracingConfig::span_filter`], and leaves out the `request`
    /// spans of `palisade-request-id`: the server span already carries `request_id`, and those
    /// spans would otherwise become a second, one-span trace per request. Busy/idle timings and
    /// thread attributes are off (they cost on every span and are not conventions).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        // Off, the layer is filtered to nothing rather than absent: an absent (`None`) layer
        // counts as one that wants every span, so the server span would still be made for it.
        let exporting = self.tracer.is_some();
        // Checked by `TracingConfig::validate`.
        let spans =
            EnvFilter::try_new(&self.span_filter).unwrap_or_else(|_| EnvFilter::new("info"));
        // Off, the hint says so: nothing this layer could want raises the global level.
        let hint = if exporting {
            spans.max_level_hint().unwrap_or(LevelFilter::TRACE)
        } else {
            LevelFilter::OFF
        };
        self.tracer
            .clone()
            .map(|tracer| {
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_tracked_inactivity(false)
                    .with_threads(false)
                    .with_location(self.span_locations)
            })
            .with_filter(
                filter_fn(move |meta| {
                    exporting
                        && *meta.level() <= hint
                        && !(meta.is_span() && meta.target() == "palisade_request_id")
                })
                .with_max_level_hint(hint)
                .and(spans),
            )
    }

    /// The OpenTelemetry tracer, for code that uses the OpenTelemetry API directly.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer.as_ref()
    }

    /// The export counters.
    pub fn stats(&self) -> ExportStats {
        self.stats.snapshot()
    }

    /// Exports the queued spans now and waits (at most 5 s). Blocks the calling thread: in async
    /// code run it with `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`TelemetryError::Exporter`] when the flush failed or timed out.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        match &self.provider {
            Some(provider) => provider
                .force_flush()
                .map_err(|e| TelemetryError::Exporter(e.to_string())),
            None => Ok(()),
        }
    }

    /// Flushes the queued spans and stops export, without blocking the async runtime (the
    /// blocking part runs on `spawn_blocking`).
    ///
    /// # Errors
    ///
    /// [`TelemetryError::Exporter`] when the final export failed or timed out.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        let result = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::spawn_blocking(move || provider.shutdown())
                .await
                .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string()))),
            Err(_) => provider.shutdown(),
        };
        result.map_err(|e| TelemetryError::Exporter(e.to_string()))
    }

    /// Flushes and stops export, blocking the calling thread (outside async code).
    ///
    /// # Errors
    ///
    /// [`TelemetryError::Exporter`] when the final export failed or timed out.
    pub fn shutdown_blocking(mut self) -> Result<(), TelemetryError> {
        match self.provider.take() {
            Some(provider) => provider
                .shutdown()
                .map_err(|e| TelemetryError::Exporter(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // gRPC export needs the runtime to make progress while we wait for the flush.
        match tokio::runtime::Handle::try_current() {
            Err(_) => {
                let _ = provider.shutdown();
            }
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| {
                    let _ = provider.shutdown();
                });
            }
            Ok(_) => {
                // A current-thread runtime cannot run the export while this thread waits: flush
                // on a thread of its own, without waiting. Use `shutdown().await` instead.
                let _ = std::thread::Builder::new()
                    .name("palisade-telemetry-shutdown".to_owned())
                    .spawn(move || {
                        let _ = provider.shutdown();
                    });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<TracingConfig, ConfigError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TracingConfig::from_lookup(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_from_an_empty_environment() {
        let config = from(&[]).unwrap();
        assert_eq!(config, TracingConfig::default());
        assert!(config.enabled);
    }

    #[test]
    fn sdk_disabled_and_exporter_none_turn_export_off() {
        assert!(!from(&[("OTEL_SDK_DISABLED", "TRUE")]).unwrap().enabled);
        assert!(!from(&[("OTEL_TRACES_EXPORTER", "none")]).unwrap().enabled);
        assert_eq!(
            from(&[("OTEL_SDK_DISABLED", "yes")]).unwrap_err().key(),
            "OTEL_SDK_DISABLED"
        );
        assert_eq!(
            from(&[("OTEL_TRACES_EXPORTER", "zipkin")])
                .unwrap_err()
                .key(),
            "OTEL_TRACES_EXPORTER"
        );
    }

    #[test]
    fn endpoints_follow_the_signal_rules() {
        let http = |pairs: &[(&str, &str)]| from(pairs).map(|c| c.endpoint);
        assert_eq!(
            http(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap(),
            Some("http://c:4317".to_owned())
        );
        if cfg!(feature = "otlp-http") {
            assert_eq!(
                http(&[
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")
                ])
                .unwrap(),
                Some("http://c:4318/v1/traces".to_owned())
            );
            assert_eq!(
                http(&[
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318")
                ])
                .unwrap(),
                Some("http://c:4318/custom".to_owned())
            );
        } else {
            assert_eq!(
                from(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
                    .unwrap_err()
                    .key(),
                "tracing.protocol"
            );
        }
        assert_eq!(
            from(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])
                .unwrap_err()
                .key(),
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        );
        assert_eq!(
            from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")])
                .unwrap_err()
                .key(),
            "tracing.endpoint"
        );
    }

    #[test]
    fn samplers_and_ratios() {
        let sampler = |pairs: &[(&str, &str)]| from(pairs).map(|c| c.sampler);
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1")
            ])
            .unwrap(),
            TraceSampler::ParentBasedTraceIdRatio(0.1)
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio")]).unwrap(),
            TraceSampler::TraceIdRatio(1.0)
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap(),
            TraceSampler::AlwaysOff
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "sometimes")])
                .unwrap_err()
                .key(),
            "OTEL_TRACES_SAMPLER"
        );
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "-0.5")
            ])
            .unwrap_err()
            .key(),
            "OTEL_TRACES_SAMPLER_ARG"
        );
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let config = from(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs, a=b%2Cc",
            ),
            ("OTEL_SERVICE_NAME", "from-name"),
        ])
        .unwrap();
        assert_eq!(config.service_name, "from-name");
        assert_eq!(
            config.resource_attributes,
            vec![("a".to_owned(), "b,c".to_owned())]
        );
        let config = from(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")]).unwrap();
        assert_eq!(config.service_name, "from-attrs");
        assert_eq!(
            from(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")])
                .unwrap_err()
                .key(),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
        assert_eq!(
            from(&[("OTEL_RESOURCE_ATTRIBUTES", "a=%zz")])
                .unwrap_err()
                .key(),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
    }

    #[test]
    fn batch_settings_are_checked() {
        let config = from(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
        ])
        .unwrap();
        assert_eq!(config.max_queue_size, 100);
        assert_eq!(config.max_export_batch_size, 10);
        assert_eq!(config.scheduled_delay, Duration::from_millis(250));
        assert_eq!(config.export_timeout, Duration::from_millis(1500));
        assert_eq!(
            from(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100")])
                .unwrap()
                .max_export_batch_size,
            100,
            "a small queue caps the default batch"
        );
        assert_eq!(
            from(&[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "200")
            ])
            .unwrap_err()
            .key(),
            "tracing.max_export_batch_size"
        );
        assert_eq!(
            from(&[("OTEL_BSP_MAX_QUEUE_SIZE", "many")])
                .unwrap_err()
                .key(),
            "OTEL_BSP_MAX_QUEUE_SIZE"
        );
        assert_eq!(
            from(&[("OTEL_BSP_SCHEDULE_DELAY", "0")]).unwrap_err().key(),
            "tracing.scheduled_delay"
        );
        assert_eq!(
            from(&[("RUST_LOG", "info,[")]).unwrap_err().key(),
            "tracing.log_filter"
        );
        let bad_spans = TracingConfig {
            span_filter: "palisade=[".to_owned(),
            ..TracingConfig::default()
        };
        assert_eq!(
            bad_spans.validate().unwrap_err().key(),
            "tracing.span_filter"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_from_a_configuration_file() {
        let config: TracingConfig = serde_json::from_str(
            r#"{"service_name": "checkout", "sampler": {"parentbased_traceidratio": 0.5},
                "scheduled_delay": 0.25, "endpoint": "http://collector:4317",
                "resource_attributes": [["team", "payments"]]}"#,
        )
        .unwrap();
        assert_eq!(config.service_name, "checkout");
        assert_eq!(config.sampler, TraceSampler::ParentBasedTraceIdRatio(0.5));
        assert_eq!(config.scheduled_delay, Duration::from_millis(250));
        assert_eq!(
            config.max_queue_size, 2048,
            "absent keys keep their defaults"
        );
        config.validate().unwrap();
        let always: TracingConfig = serde_json::from_str(r#"{"sampler": "always_on"}"#).unwrap();
        assert_eq!(always.sampler, TraceSampler::AlwaysOn);
        assert!(serde_json::from_str::<TracingConfig>(r#"{"unknown": 1}"#).is_err());
    }

    #[test]
    fn disabled_export_builds_without_a_runtime() {
        let guard = TracingConfig {
            enabled: false,
            ..TracingConfig::default()
        }
        .build()
        .unwrap();
        assert!(!guard.is_enabled());
        assert!(guard.tracer().is_none());
        assert_eq!(guard.stats().exported, 0);
    }

    /// Spans go nowhere.
    #[derive(Debug)]
    struct Discard;

    impl SpanExporter for Discard {
        async fn export(&self, _batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_log_filter_stricter_than_the_span_filter_keeps_each_to_its_level() {
        // Spans at `info`, logs at `warn`: the subscriber's level is `info`, so `info!` reaches
        // the logger's filters, which must refuse it without breaking their level hint
        // (`tracing-subscriber` asserts the hint in debug builds).
        let config = TracingConfig {
            log_filter: "warn".to_owned(),
            span_filter: "info".to_owned(),
            log_to_stdout: false,
            ..TracingConfig::default()
        };
        let guard = config.build_with_exporter(Discard).unwrap();
        let captured = palisade_testkit::LogCapture::default();
        let writer = captured.clone();
        let subscriber = Registry::default()
            .with(config.log_layer(move || writer.clone()).unwrap())
            .with(guard.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            tracing::debug!("a debug line");
            tracing::info!("an info line");
            tracing::warn!("a warning");
            tracing::info_span!(target: "palisade_telemetry", "HTTP request").in_scope(|| {});
        });
        let text = captured.text();
        assert!(text.contains("a warning"), "{text}");
        assert!(
            !text.contains("info line") && !text.contains("debug line"),
            "{text}"
        );
        let _ = guard.shutdown().await;
    }

    #[test]
    fn with_export_off_the_subscriber_keeps_the_log_filter_level() {
        // The global level `debug!` call sites are checked against first: it must stay the log
        // filter's, not become "anything" because of the filters this crate adds.
        let config = TracingConfig {
            enabled: false,
            log_filter: "info".to_owned(),
            ..TracingConfig::default()
        };
        let guard = config.build().unwrap();
        let subscriber = Registry::default()
            .with(config.log_layer(std::io::sink).unwrap())
            .with(guard.layer());
        assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::INFO));
    }

    #[cfg(feature = "otlp-grpc")]
    #[test]
    fn grpc_export_outside_a_runtime_is_an_error_not_a_panic() {
        let err = TracingConfig::default().build().unwrap_err();
        assert!(matches!(err, TelemetryError::NoRuntime), "{err}");
    }
}
