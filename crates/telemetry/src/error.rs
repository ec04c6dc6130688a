//! Errors of installing telemetry.

use std::fmt;

use palisade_core::ConfigError;

/// Why tracing or metrics could not be set up. Configuration mistakes are
/// [`ConfigError`]s naming the key; the other variants are about the process.
#[derive(Debug)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A configuration value (or `OTEL_*` environment variable) makes no sense.
    Config(ConfigError),
    /// A global was already set: the `tracing` subscriber, or the `metrics` recorder. Installing
    /// twice is an error, never a panic.
    AlreadyInstalled(&'static str),
    /// The OTLP gRPC exporter and the metrics listener run on Tokio: call from inside a runtime.
    NoRuntime,
    /// The OTLP exporter could not be built.
    Exporter(String),
    /// The metrics listener could not bind.
    Io(std::io::Error),
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => e.fmt(f),
            Self::AlreadyInstalled(what) => write!(f, "a global {what} is already installed"),
            Self::NoRuntime => f.write_str(
                "telemetry must be installed from inside a Tokio runtime (OTLP over gRPC and the \
                 metrics listener run on it)",
            ),
            Self::Exporter(e) => write!(f, "cannot build the OTLP exporter: {e}"),
            Self::Io(e) => write!(f, "cannot start the metrics listener: {e}"),
        }
    }
}

impl std::error::Error for TelemetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for TelemetryError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}
