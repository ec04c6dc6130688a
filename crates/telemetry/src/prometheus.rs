//! The Prometheus exporter: every metric any Palisade crate emits through the `metrics` facade,
//! in the Prometheus text format, on the application's router or a separate listener.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, header};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use palisade_core::ConfigError;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    error::TelemetryError,
    metrics::{DEFAULT_SECONDS_BUCKETS, REQUEST_DURATION, SEMCONV_DURATION_BUCKETS, describe},
};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const SECTION: &str = "prometheus";

/// The Prometheus exporter's configuration, as data.
///
/// ```toml
/// [prometheus]
/// path = "/metrics"
/// listen = "0.0.0.0:9464"      # optional: a separate listener; omit to serve on the app router
/// duration_buckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
/// seconds_buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/// upkeep_interval = 5           # seconds
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct PrometheusConfig {
    /// The path of the metrics endpoint, on [`PrometheusMetrics::router`] and on the listener.
    /// Default `/metrics`.
    pub path: String,
    /// A separate listener for the metrics endpoint (so it is not exposed with the API), started
    /// by [`PrometheusConfig::install`]. Default none.
    pub listen: Option<SocketAddr>,
    /// The buckets of `http_server_request_duration_seconds`. Default the semantic conventions'
    /// ([`SEMCONV_DURATION_BUCKETS`]).
    pub duration_buckets: Vec<f64>,
    /// The buckets of every other histogram (all Palisade histograms are `*_seconds`). Default
    /// [`DEFAULT_SECONDS_BUCKETS`]. Histograms are never rendered as summaries.
    pub seconds_buckets: Vec<f64>,
    /// How often histogram samples are folded into their buckets when nobody scrapes, which keeps
    /// memory bounded. Default 5 seconds.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub upkeep_interval: Duration,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            path: "/metrics".to_owned(),
            listen: None,
            duration_buckets: SEMCONV_DURATION_BUCKETS.to_vec(),
            seconds_buckets: DEFAULT_SECONDS_BUCKETS.to_vec(),
            upkeep_interval: Duration::from_secs(5),
        }
    }
}

fn check_buckets(key: &'static str, buckets: &[f64]) -> Result<(), ConfigError> {
    if buckets.is_empty() {
        return Err(ConfigError::new(key, "needs at least one bucket"));
    }
    if buckets.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        return Err(ConfigError::new(
            key,
            "buckets must be positive, finite seconds",
        ));
    }
    if buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ConfigError::new(key, "buckets must be strictly increasing"));
    }
    Ok(())
}

impl PrometheusConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] keyed `prometheus.<field>`: a path that does not start with `/`, empty,
    /// unsorted or non-positive buckets, a zero upkeep interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = || {
            if !self.path.starts_with('/') || self.path.parse::<http::Uri>().is_err() {
                return Err(ConfigError::new(
                    "path",
                    format!("{:?} is not a path starting with '/'", self.path),
                ));
            }
            check_buckets("duration_buckets", &self.duration_buckets)?;
            check_buckets("seconds_buckets", &self.seconds_buckets)?;
            if self.upkeep_interval.is_zero() {
                return Err(ConfigError::new("upkeep_interval", "must be above zero"));
            }
            Ok(())
        };
        check().map_err(|e: ConfigError| e.within(SECTION))
    }

    /// The recorder and its handle, without installing anything: for tests
    /// (`metrics::with_local_recorder`) and for applications that combine recorders. Nothing
    /// runs upkeep: render regularly or call [`PrometheusHandle::run_upkeep`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`], as [`PrometheusConfig::validate`] reports it.
    pub fn build_recorder(&self) -> Result<(PrometheusRecorder, PrometheusMetrics), ConfigError> {
        self.validate()?;
        let builder = PrometheusBuilder::new()
            .set_buckets(&self.seconds_buckets)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(REQUEST_DURATION.to_owned()),
                    &self.duration_buckets,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_owned()),
                    &self.seconds_buckets,
                )
            })
            .map_err(|e| ConfigError::new("prometheus.buckets", e.to_string()))?;
        let recorder = builder.build_recorder();
        let metrics = PrometheusMetrics {
            handle: recorder.handle(),
            path: self.path.as_str().into(),
            listen_addr: None,
        };
        Ok((recorder, metrics))
    }

    /// Installs the recorder as the global `metrics` recorder, describes this crate's metrics,
    /// starts the upkeep thread and, when [`listen`](Self::listen) is set, the listener (on the
    /// current Tokio runtime).
    ///
    /// # Errors
    ///
    /// [`TelemetryError::Config`] for a bad configuration,
    /// [`TelemetryError::AlreadyInstalled`] when a global recorder is already installed (this
    /// one or any other: a second install is an error, not a panic),
    /// [`TelemetryError::NoRuntime`] or [`TelemetryError::Io`] when the listener cannot start.
    pub fn install(&self) -> Result<PrometheusMetrics, TelemetryError> {
        let (recorder, mut metrics) = self.build_recorder()?;
        if self.listen.is_some() && tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::NoRuntime);
        }
        metrics::set_global_recorder(recorder)
            .map_err(|_| TelemetryError::AlreadyInstalled("metrics recorder"))?;
        describe();
        let handle = metrics.handle.clone();
        let interval = self.upkeep_interval;
        // Histogram samples wait in lock-free buffers until a render or an upkeep folds them
        // into buckets: without a scraper they would grow. A plain thread, so it runs with any
        // runtime or none.
        let _ = std::thread::Builder::new()
            .name("palisade-metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    handle.run_upkeep();
                }
            });
        if let Some(addr) = self.listen {
            let listener = std::net::TcpListener::bind(addr).map_err(TelemetryError::Io)?;
            let server = metrics.serve_std(listener).map_err(TelemetryError::Io)?;
            metrics.listen_addr = Some(server.local_addr());
        }
        Ok(metrics)
    }
}

/// The installed Prometheus exporter: renders the exposition and serves it.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use palisade_telemetry::{PrometheusMetrics, TelemetryLayer};
///
/// # fn main() -> Result<(), palisade_telemetry::TelemetryError> {
/// let metrics = PrometheusMetrics::install()?; // the global recorder, once per process
/// let app: Router = metrics.add_route( // GET /metrics, outside the telemetry layer
///     Router::new()
///         .route("/", get(|| async { "hello" }))
///         .layer(TelemetryLayer::new()),
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PrometheusMetrics {
    handle: PrometheusHandle,
    path: Arc<str>,
    listen_addr: Option<SocketAddr>,
}

/// A metrics listener started by [`PrometheusMetrics::serve`].
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the listener.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl PrometheusMetrics {
    /// Installs the exporter with the default [`PrometheusConfig`]: the global recorder with the
    /// semantic-convention buckets, served by [`router`](Self::router).
    ///
    /// # Errors
    ///
    /// [`TelemetryError::AlreadyInstalled`] when a global recorder is already installed.
    pub fn install() -> Result<Self, TelemetryError> {
        PrometheusConfig::default().install()
    }

    /// A configuration to change, then [`PrometheusConfig::install`].
    pub fn config() -> PrometheusConfig {
        PrometheusConfig::default()
    }

    /// The address of the listener [`PrometheusConfig::listen`] started, if any.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// The exposition, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The underlying handle (upkeep, protobuf rendering).
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }

    /// The exposition as an HTTP response (`text/plain; version=0.0.4`), for a handler of your
    /// own.
    pub fn response(&self) -> Response {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            self.render(),
        )
            .into_response()
    }

    /// Adds `GET <path>` (default `/metrics`) to `router`. Call it after the application's
    /// `.layer(...)` calls to keep scrapes out of the HTTP metrics, spans and limits (layers
    /// apply to the routes present when they are added).
    ///
    /// Prefer it to merging [`router`](Self::router) after the layers: axum's `Router::merge`
    /// keeps the merged router's fallback when both are default ones, so 404s would no longer
    /// pass through the layers and would go unmeasured.
    pub fn add_route<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let metrics = self.clone();
        router.route(
            &self.path,
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.response() }
            }),
        )
    }

    /// A router answering `GET <path>` (default `/metrics`), for a separate listener or to merge
    /// into the application's router *before* its layers (see [`add_route`](Self::add_route)).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.add_route(Router::new())
    }

    /// Serves the exposition on a separate listener, on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// The listener's I/O error.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        Ok(self.serve_listener(listener))
    }

    fn serve_std(&self, listener: std::net::TcpListener) -> std::io::Result<MetricsServer> {
        listener.set_nonblocking(true)?;
        Ok(self.serve_listener(TcpListener::from_std(listener)?))
    }

    fn serve_listener(&self, listener: TcpListener) -> MetricsServer {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let app: Router = self.router();
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(target: "palisade_telemetry", %err, "metrics listener stopped");
            }
        });
        MetricsServer { local_addr, task }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_from_a_configuration_file() {
        let config: PrometheusConfig = serde_json::from_str(
            r#"{"path": "/internal/metrics", "listen": "127.0.0.1:9464", "upkeep_interval": 2}"#,
        )
        .unwrap();
        assert_eq!(config.path, "/internal/metrics");
        assert_eq!(
            config.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(config.upkeep_interval, Duration::from_secs(2));
        assert_eq!(config.duration_buckets, SEMCONV_DURATION_BUCKETS.to_vec());
        config.validate().unwrap();
        assert!(serde_json::from_str::<PrometheusConfig>(r#"{"port": 1}"#).is_err());
    }

    #[test]
    fn the_default_configuration_is_valid() {
        PrometheusConfig::default().validate().unwrap();
    }
}
