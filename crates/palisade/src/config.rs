//! The whole stack as data: one `palisade.toml` with environment overrides.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Env, Format, Serialized, Toml},
};
use palisade_bulkhead::BulkheadConfig;
use palisade_circuit_breaker::CircuitBreakerConfig;
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitConfig, ConnectionLimitConfig};
use palisade_core::ConfigError;
use palisade_health::{DrainConfig, HealthConfig};
use palisade_loadshed_priority::LoadShedConfig;
use palisade_overload_monitor::OverloadMonitorConfig;
use palisade_rate_limit::RateLimitConfig;
use palisade_request_guard::RequestGuardConfig;
use palisade_request_id::RequestIdConfig;
use palisade_security_headers::SecurityHeadersConfig;
use palisade_telemetry::TelemetryConfig;
use palisade_timeout::TimeoutConfig;
use palisade_ws_backpressure::BackpressureConfig;

use crate::client::ClientConfig;

/// The environment variable naming the configuration file read by [`PalisadeConfig::load`].
pub const CONFIG_FILE_ENV: &str = "PALISADE_CONFIG";
/// The prefix of environment overrides: `PALISADE_<SECTION>__<KEY>=value`, with `__` between
/// the levels of the key (`PALISADE_CONCURRENCY__MAX_IN_FLIGHT=500`,
/// `PALISADE_SERVER__CONNECTIONS__MAX_CONNECTIONS=2000`). `PALISADE_ADDR` is short for
/// `PALISADE_SERVER__ADDR`. Variables without `__` (such as `PALISADE_CONFIG`) are not keys.
pub const ENV_PREFIX: &str = "PALISADE_";

/// The whole Palisade stack as one configuration: what `palisade.toml` holds.
///
/// Every section and key is optional; what is left out keeps its documented default, and an
/// unknown key is an error (a typo must not silently leave a default in force). Durations are in
/// seconds (`retry_after = 2`, `max_wait = 0.25`). The repository's `palisade.example.toml` lists
/// every key with its default.
///
/// | section | type | what it configures |
/// |---|---|---|
/// | `[server]` | [`ServerConfig`] | address, HTTP/1.1 limits, connection limit, drain |
/// | `[layers]` | [`LayerToggles`] | which layers of the stack are on |
/// | `[request_id]` | [`palisade_request_id::RequestIdConfig`] | request ids (its `span_level` applies when the telemetry layer opens no server span: that span names the request id, so the stack opens one span per request, not two) |
/// | `[telemetry]` | [`palisade_telemetry::TelemetryConfig`] | request spans and HTTP metrics |
/// | `[security_headers]` | [`palisade_security_headers::SecurityHeadersConfig`] | response security headers |
/// | `[request_guard]` | [`RequestGuardConfig`] | hostile request targets refused before any handler |
/// | `[health]` | [`HealthConfig`] | probe paths, details, overload policy |
/// | `[rate_limit]` | [`RateLimitConfig`] | per-client rate limits; off until a policy is defined |
/// | `[concurrency]` | [`ConcurrencyLimitConfig`] | the global in-flight limit |
/// | `[load_shed]` | [`LoadShedConfig`] | priority classes and shedding curve |
/// | `[timeout]` | [`TimeoutConfig`] | the request timeout (`503` when a response has not started in time) |
/// | `[limits]` | [`RequestLimits`] | request body size (tower-http) |
/// | `[bulkheads.<name>]` | [`BulkheadConfig`] | named per-route pools, see [`Stack::bulkhead`](crate::Stack::bulkhead) |
/// | `[circuit_breakers.<name>]` | [`CircuitBreakerConfig`] | named breakers, see [`Stack::circuit_breaker`](crate::Stack::circuit_breaker) |
/// | `[websocket]` | [`BackpressureConfig`] | send queues of the application's WebSockets (`palisade::ws`) |
/// | `[clients.<name>]` | [`ClientConfig`] | outgoing calls: retries, budget, breaker, attempt timeout, see [`Stack::client`](crate::Stack::client) |
/// | `[overload]` | [`OverloadMonitorConfig`] | memory, file descriptor and runtime lag monitors feeding the overload signal, see [`Stack::spawn_monitors`](crate::Stack::spawn_monitors) |
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PalisadeConfig {
    /// The listener, HTTP/1.1 settings, connection limit and drain.
    pub server: ServerConfig,
    /// Which layers are on.
    pub layers: LayerToggles,
    /// Request ids. With the telemetry layer's server span on, the stack opens no request id
    /// span (`span_level` is ignored): the server span carries `request_id`.
    pub request_id: RequestIdConfig,
    /// Request spans (OpenTelemetry) and HTTP metrics.
    pub telemetry: TelemetryConfig,
    /// Security headers.
    pub security_headers: SecurityHeadersConfig,
    /// Hostile request targets refused before any handler.
    pub request_guard: RequestGuardConfig,
    /// Health probes.
    pub health: HealthConfig,
    /// Per-client (or per-key) rate limits. Off while no policy is defined.
    pub rate_limit: RateLimitConfig,
    /// The global in-flight request limit.
    pub concurrency: ConcurrencyLimitConfig,
    /// Priority load shedding.
    pub load_shed: LoadShedConfig,
    /// The request timeout.
    pub timeout: TimeoutConfig,
    /// The request body limit.
    pub limits: RequestLimits,
    /// Bulkheads by name (the table key is the bulkhead's name).
    pub bulkheads: BTreeMap<String, BulkheadConfig>,
    /// Circuit breakers by name (the table key is the breaker's name).
    pub circuit_breakers: BTreeMap<String, CircuitBreakerConfig>,
    /// WebSocket send queues and slow-client policy, for the application's
    /// [`Hub`](palisade_ws_backpressure::Hub) or [`Backpressure`](palisade_ws_backpressure::Backpressure).
    pub websocket: BackpressureConfig,
    /// Clients of upstreams by name (the table key names the client, its retry metrics and its
    /// breaker).
    pub clients: BTreeMap<String, ClientConfig>,
    /// Resource monitors (memory, file descriptors, runtime lag). Each is off until enabled.
    pub overload: OverloadMonitorConfig,
}

/// Which layers of the preset stack are on. All are on by default; turning one off removes it
/// from the stack entirely (to keep a layer but not enforce it, set its `mode = "observe_only"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::struct_excessive_bools)] // one switch per layer is the point
pub struct LayerToggles {
    /// The connection limit on the listener ([`serve`](crate::serve)).
    pub connection_limit: bool,
    /// Request ids.
    pub request_id: bool,
    /// Request spans and HTTP metrics.
    pub telemetry: bool,
    /// Security headers.
    pub security_headers: bool,
    /// The request guard.
    pub request_guard: bool,
    /// Health probes.
    pub health: bool,
    /// Rate limits (applied only when `[rate_limit]` defines a policy).
    pub rate_limit: bool,
    /// The global in-flight limit.
    pub concurrency: bool,
    /// Priority load shedding.
    pub load_shed: bool,
    /// The request timeout.
    pub timeout: bool,
    /// The request body limit.
    pub body_limit: bool,
}

impl Default for LayerToggles {
    fn default() -> Self {
        Self {
            connection_limit: true,
            request_id: true,
            telemetry: true,
            security_headers: true,
            request_guard: true,
            health: true,
            rate_limit: true,
            concurrency: true,
            load_shed: true,
            timeout: true,
            body_limit: true,
        }
    }
}

/// Limits on each request's body, enforced by tower-http's `RequestBodyLimitLayer`. (The request
/// timeout has a section of its own, `[timeout]`.)
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_body_bytes` | 2 MiB | larger request bodies are answered `413` (tower-http `RequestBodyLimitLayer`) |
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestLimits {
    /// The largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

impl RequestLimits {
    /// Checks the limits.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero body size.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
        }
        Ok(())
    }
}

/// How [`serve`](crate::serve) runs the server: the address, HTTP/1.1 settings that defend against
/// slow and hostile clients, the connection limit and the drain sequence.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `addr` | `127.0.0.1:8080` | where [`Stack::bind`](crate::Stack::bind) listens (`PALISADE_ADDR` overrides) |
/// | `header_read_timeout` | 10 s | from the first byte of a request to the end of its headers; a client slower than this (slowloris) is disconnected |
/// | `idle_timeout` | 75 s | a keep-alive connection idle this long is closed; keep it above your load balancer's idle timeout (60 s for most), or the balancer may reuse a connection the server is closing |
/// | `keep_alive` | true | HTTP/1.1 persistent connections |
/// | `max_requests_per_connection` | none | after this many requests a connection is closed (`Connection: close`), so long-lived clients rebalance across replicas |
/// | `max_header_bytes` | 16 KiB | request line plus headers; more is answered `431` |
/// | `max_headers` | 100 | header fields per request; more is answered `431` (100 is hyper's default; any other value costs a heap allocation per request) |
/// | `connections` | max 10 000 | the connection limit on the listener ([`ConnectionLimitConfig`]) |
/// | `drain` | 5 s / 20 s | the shutdown sequence ([`DrainConfig`]: propagation delay, deadline) |
/// | `ops` | none | the operations listener ([`OpsConfig`]: probes, `/metrics`, admin routes on their own port) |
/// | `tls` | off | HTTPS and mutual TLS ([`TlsConfig`](crate::TlsConfig); the `tls` feature) |
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The listening address.
    pub addr: SocketAddr,
    /// The longest a client may take to send a request's headers, from its first byte.
    #[serde(with = "palisade_core::duration_secs")]
    pub header_read_timeout: Duration,
    /// The longest a keep-alive connection may stay idle between requests.
    #[serde(with = "palisade_core::duration_secs")]
    pub idle_timeout: Duration,
    /// Whether connections are kept alive between requests.
    pub keep_alive: bool,
    /// Requests served on one connection before it is closed; none for no limit.
    pub max_requests_per_connection: Option<NonZeroU32>,
    /// The largest request line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// The most header fields in a request.
    pub max_headers: usize,
    /// The connection limit (on when `layers.connection_limit` is).
    pub connections: ConnectionLimitConfig,
    /// The shutdown sequence.
    pub drain: DrainConfig,
    /// The operations listener.
    pub ops: OpsConfig,
    /// HTTPS, off until a certificate is set.
    pub tls: crate::TlsConfig,
}

/// The operations listener: a second address that serves the probes, `/metrics` and the routes
/// the application puts there (admin controls), outside the public listener's connection limit
/// and every limiting layer, so the kubelet's probes and the scraper are answered even while the
/// public port is saturated, and operators' routes are not reachable from the public port.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `addr` | none (off) | where it listens (`PALISADE_OPS_ADDR` overrides), e.g. `0.0.0.0:9090` |
/// | `public_probes` | true | whether the public port answers the probes too; false serves them on the operations port only |
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Where the operations listener listens; none for no operations listener.
    pub addr: Option<SocketAddr>,
    /// Whether the public port answers the probes too.
    pub public_probes: bool,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            addr: None,
            public_probes: true,
        }
    }
}

/// The default listening address.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));

/// The smallest `max_header_bytes` accepted: hyper's smallest read buffer.
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            keep_alive: true,
            max_requests_per_connection: None,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            connections: ConnectionLimitConfig::default(),
            drain: DrainConfig::default(),
            ops: OpsConfig::default(),
            tls: crate::TlsConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: a zero timeout, a header size below 8 KiB (hyper's
    /// smallest buffer) or above 1 MiB, no headers allowed, or an invalid connection limit or
    /// drain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout.is_zero() {
            return Err(ConfigError::new(
                "header_read_timeout",
                "must be more than 0 seconds",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "idle_timeout",
                "must be more than 0 seconds",
            ));
        }
        if !(MIN_HEADER_BYTES..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(ConfigError::new(
                "max_header_bytes",
                format!(
                    "must be between {MIN_HEADER_BYTES} and 1048576 (got {})",
                    self.max_header_bytes
                ),
            ));
        }
        if self.max_headers == 0 {
            return Err(ConfigError::new("max_headers", "must be at least 1"));
        }
        self.connections
            .validate()
            .map_err(|e| e.within("connections"))?;
        // `DrainConfig` names its keys `drain.*` itself.
        self.drain.validate()?;
        self.tls.validate().map_err(|e| e.within("tls"))?;
        if self.tls.is_enabled() && !cfg!(feature = "tls") {
            return Err(ConfigError::new(
                "tls",
                "this build has no TLS: enable the `tls` feature of palisade",
            ));
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file or an environment variable could not be read or parsed, a key is unknown, or a
    /// value has the wrong type. The message names the key and where it came from.
    Parse(Box<figment::Error>),
    /// A value is out of range or inconsistent.
    Invalid(ConfigError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(err) => {
                // figment names keys relative to its profile ("default.server.addr").
                let text = err.to_string().replace("\"default.", "\"");
                write!(f, "configuration error: {text}")
            }
            Self::Invalid(err) => write!(f, "configuration error: {err}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Parse(err) => Some(err),
            Self::Invalid(err) => Some(err),
        }
    }
}

impl From<ConfigError> for LoadError {
    fn from(err: ConfigError) -> Self {
        Self::Invalid(err)
    }
}

impl PalisadeConfig {
    /// Reads the configuration the way a deployed server should: the file named by
    /// `PALISADE_CONFIG` (or `palisade.toml` in the working directory, if present), then the
    /// `PALISADE_*__*` environment overrides on top, then validation.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the key and the problem; a missing file named by
    /// `PALISADE_CONFIG` is an error, a missing default `palisade.toml` is not.
    pub fn load() -> Result<Self, LoadError> {
        Self::load_with_defaults("")
    }

    /// [`load`](Self::load), over an application's own defaults (a TOML document, typically
    /// `include_str!`-ed): those replace Palisade's defaults, and the file and environment still
    /// override them.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the key and the problem, in `defaults` too.
    pub fn load_with_defaults(defaults: &str) -> Result<Self, LoadError> {
        let file = if let Some(path) = std::env::var_os(CONFIG_FILE_ENV) {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(LoadError::Invalid(ConfigError::new(
                    CONFIG_FILE_ENV,
                    format!("{} is not a readable file", path.display()),
                )));
            }
            Some(path)
        } else {
            let default = PathBuf::from("palisade.toml");
            default.is_file().then_some(default)
        };
        let mut figment = Figment::new().merge(Toml::string(defaults));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        Self::extract(&figment.merge(env_overrides()))
    }

    /// Reads defaults, then `file` (when given), then the environment overrides, and validates.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the key and the problem.
    pub fn load_from(file: Option<&Path>) -> Result<Self, LoadError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        Self::extract(&figment.merge(env_overrides()))
    }

    /// Parses a TOML document (no environment overrides) and validates it: for tests and for
    /// configurations embedded in the binary.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the key and the problem.
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        Self::extract(&Figment::new().merge(Toml::string(text)))
    }

    fn extract(figment: &Figment) -> Result<Self, LoadError> {
        let config: Self = with_client_breaker_defaults(figment.clone())
            .extract()
            .map_err(|e| LoadError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section, as the layers' builders would, without building anything.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], its key prefixed with the section (`concurrency.low_water`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.request_id
            .validate()
            .map_err(|e| e.within("request_id"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.within("telemetry"))?;
        self.security_headers
            .validate()
            .map_err(|e| e.within("security_headers"))?;
        self.request_guard
            .validate()
            .map_err(|e| e.within("request_guard"))?;
        self.health.validate().map_err(|e| e.within("health"))?;
        if self.rate_limit.is_configured() {
            self.rate_limit
                .validate()
                .map_err(|e| e.within("rate_limit"))?;
        }
        self.concurrency
            .validate()
            .map_err(|e| e.within("concurrency"))?;
        self.load_shed
            .validate()
            .map_err(|e| e.within("load_shed"))?;
        self.timeout.validate().map_err(|e| e.within("timeout"))?;
        self.limits.validate().map_err(|e| e.within("limits"))?;
        self.overload.validate().map_err(|e| e.within("overload"))?;
        self.websocket
            .validate()
            .map_err(|e| e.within("websocket"))?;
        for (name, bulkhead) in &self.bulkheads {
            bulkhead
                .validate()
                .map_err(|e| e.within(&format!("bulkheads.{name}")))?;
        }
        for (name, breaker) in &self.circuit_breakers {
            breaker
                .validate()
                .map_err(|e| e.within(&format!("circuit_breakers.{name}")))?;
        }
        for (name, client) in &self.clients {
            let key = format!("clients.{name}");
            palisade_core::check_name(name).map_err(|e| e.within(&key))?;
            // The client's breaker is named after it: two breakers with one name would share
            // (and fight over) one set of metric series.
            if self.circuit_breakers.contains_key(name) {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "a [circuit_breakers.{name}] breaker has this name too; name the client \
                         differently (its breaker is configured in [clients.{name}.circuit_breaker])"
                    ),
                ));
            }
            client.validate().map_err(|e| e.within(&key))?;
        }
        Ok(())
    }
}

/// `PALISADE_SECTION__KEY` variables as `section.key`, and `PALISADE_ADDR` as `server.addr`;
/// errors name the variable (`PALISADE_CONCURRENCY__MAX_IN_FLIGHT`), not figment's dotted key.
struct EnvOverrides(Env);

/// A `[clients.NAME.circuit_breaker]` table starts from a client breaker's defaults, not a
/// server breaker's: the two keys in which they differ are joined in (a value set in the file or
/// the environment wins) for every client the configuration names.
fn with_client_breaker_defaults(figment: Figment) -> Figment {
    use figment::value::{Dict, Value};
    let names: Vec<String> = figment
        .find_value("clients")
        .ok()
        .and_then(Value::into_dict)
        .map(|clients| clients.into_keys().collect())
        .unwrap_or_default();
    if names.is_empty() {
        return figment;
    }
    // Built as nested tables, not dotted keys: a client's name may contain a dot.
    let clients: Dict = names
        .into_iter()
        .map(|name| {
            let breaker = Dict::from([
                (
                    "consecutive_failures".to_owned(),
                    Value::from(crate::client::CLIENT_CONSECUTIVE_FAILURES),
                ),
                (
                    "minimum_calls".to_owned(),
                    Value::from(crate::client::CLIENT_MINIMUM_CALLS),
                ),
            ]);
            let client = Dict::from([("circuit_breaker".to_owned(), Value::from(breaker))]);
            (name, Value::from(client))
        })
        .collect();
    figment.join(Serialized::default("clients", clients))
}

fn env_overrides() -> EnvOverrides {
    EnvOverrides(Env::prefixed(ENV_PREFIX).filter_map(|key| {
        if key == "addr" {
            Some("server.addr".into())
        } else if key == "ops_addr" {
            Some("server.ops.addr".into())
        } else if key.as_str().contains("__") {
            Some(key.as_str().replace("__", ".").to_ascii_lowercase().into())
        } else {
            None
        }
    }))
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named("the environment").interpolater(|_: &Profile, keys: &[&str]| {
            if keys == ["server", "addr"] {
                return format!("{ENV_PREFIX}ADDR");
            }
            if keys == ["server", "ops", "addr"] {
                return format!("{ENV_PREFIX}OPS_ADDR");
            }
            let keys: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("{ENV_PREFIX}{}", keys.join("__"))
        })
    }

    fn data(&self) -> Result<figment::value::Map<Profile, figment::value::Dict>, figment::Error> {
        self.0.data()
    }
}

impl PalisadeConfig {
    /// This configuration with every layer in observe-only mode (see
    /// [`preset::observe_only`](crate::preset::observe_only)).
    #[must_use]
    pub fn observe_only(mut self) -> Self {
        use palisade_core::EnforcementMode::ObserveOnly;
        self.server.connections.mode = ObserveOnly;
        self.request_id.mode = ObserveOnly;
        self.security_headers.mode = ObserveOnly;
        self.request_guard.mode = ObserveOnly;
        self.rate_limit.mode = ObserveOnly;
        self.health.overload = palisade_health::OverloadPolicy::Warn;
        self.concurrency.mode = ObserveOnly;
        self.load_shed.mode = ObserveOnly;
        self.websocket.mode = ObserveOnly;
        for bulkhead in self.bulkheads.values_mut() {
            bulkhead.mode = ObserveOnly;
        }
        for breaker in self.circuit_breakers.values_mut() {
            breaker.mode = ObserveOnly;
        }
        for client in self.clients.values_mut() {
            client.retry.mode = ObserveOnly;
            client.circuit_breaker.mode = ObserveOnly;
        }
        self.overload.mode = ObserveOnly;
        self
    }
}
