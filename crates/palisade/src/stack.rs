//! [`Stack`]: every layer of the preset, built once and applied to a `Router` in the right order.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    Router,
    http::StatusCode,
    serve::{ListenerExt, TapIo},
};
use palisade_bulkhead::BulkheadLayer;
use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, LimiterHandle};
use palisade_core::{ConfigError, OverloadState};
use palisade_health::{Check, HealthHandle, HealthLayer};
use palisade_loadshed_priority::LoadShedLayer;
use palisade_request_id::RequestIdLayer;
use palisade_security_headers::SecurityHeadersLayer;
use palisade_telemetry::TelemetryLayer;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use crate::{PalisadeConfig, ServerConfig, optional::Optional};

/// Builds a [`Stack`]: start from [`preset::production`](crate::preset::production) (or
/// [`Stack::builder`], the same thing), adjust, then [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
///
/// use palisade::{PalisadeConfig, Stack, health::Check};
///
/// let mut config = PalisadeConfig::default();
/// config.concurrency.max_in_flight = 500;
/// config.layers.load_shed = false;
/// let stack = Stack::builder()
///     .config(config)
///     .readiness_check(Check::from_fn("database", || async { Ok::<_, String>(()) }))
///     .overload_state(palisade::core::OverloadState::new()) // tests: a private signal
///     .build()
///     .unwrap();
/// assert_eq!(stack.request_limit().unwrap().thresholds().max, 500);
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct StackBuilder {
    config: PalisadeConfig,
    readiness_checks: Vec<Check>,
    liveness_checks: Vec<Check>,
    overload: Option<OverloadState>,
}

impl StackBuilder {
    /// Replaces the whole configuration (for example one read by
    /// [`PalisadeConfig::load`]).
    pub fn config(mut self, config: PalisadeConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration so far, to adjust in place.
    pub fn config_mut(&mut self) -> &mut PalisadeConfig {
        &mut self.config
    }

    /// Adds a readiness check to the health layer (checks are code, not configuration).
    pub fn readiness_check(mut self, check: Check) -> Self {
        self.readiness_checks.push(check);
        self
    }

    /// Adds a liveness check to the health layer. Keep liveness checks about this process only:
    /// a failing one gets the pod restarted.
    pub fn liveness_check(mut self, check: Check) -> Self {
        self.liveness_checks.push(check);
        self
    }

    /// The overload signal the limiters publish into and the shedder and readiness read.
    /// Default: [`OverloadState::global`]. Tests that run several stacks in one process give
    /// each its own.
    pub fn overload_state(mut self, state: OverloadState) -> Self {
        self.overload = Some(state);
        self
    }

    /// Validates the configuration and builds every layer once; their state is shared by every
    /// clone, route and connection.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], its key prefixed with the section
    /// (`concurrency.low_water`).
    pub fn build(self) -> Result<Stack, ConfigError> {
        let Self {
            config,
            readiness_checks,
            liveness_checks,
            overload,
        } = self;
        config.validate()?;
        let overload = overload.unwrap_or_else(|| OverloadState::global().clone());
        let on = config.layers;

        let request_id = on
            .request_id
            .then(|| RequestIdLayer::from_config(&config.request_id))
            .transpose()
            .map_err(|e| e.within("request_id"))?;
        let telemetry = on
            .telemetry
            .then(|| config.telemetry.build())
            .transpose()
            .map_err(|e| e.within("telemetry"))?;
        let security_headers = on
            .security_headers
            .then(|| SecurityHeadersLayer::from_config(config.security_headers.clone()))
            .transpose()
            .map_err(|e| e.within("security_headers"))?;
        let mut health = HealthLayer::builder()
            .config(config.health.clone())
            .overload_state(overload.clone());
        for check in readiness_checks {
            health = health.readiness_check(check);
        }
        for check in liveness_checks {
            health = health.liveness_check(check);
        }
        // Built even when its layer is off: the drain sequence fails readiness through it.
        let health = health.build().map_err(|e| e.within("health"))?;
        let load_shed = on
            .load_shed
            .then(|| {
                LoadShedLayer::builder_from(config.load_shed.clone())
                    .overload_state(overload.clone())
                    .build()
            })
            .transpose()
            .map_err(|e| e.within("load_shed"))?;
        let concurrency = on
            .concurrency
            .then(|| {
                let mut limit = config.concurrency.clone();
                limit.overload = Some(overload.clone());
                ConcurrencyLimitLayer::new(limit)
            })
            .transpose()
            .map_err(|e| e.within("concurrency"))?;

        let mut bulkheads = BTreeMap::new();
        for (name, bulkhead) in &config.bulkheads {
            let mut bulkhead = bulkhead.clone();
            bulkhead.name = name.clone().into();
            let layer =
                BulkheadLayer::new(bulkhead).map_err(|e| e.within(&format!("bulkheads.{name}")))?;
            bulkheads.insert(name.clone(), layer);
        }
        let mut circuit_breakers = BTreeMap::new();
        for (name, breaker) in &config.circuit_breakers {
            let mut breaker = breaker.clone();
            breaker.name = name.clone().into();
            let breaker = CircuitBreaker::new(&breaker)
                .map_err(|e| e.within(&format!("circuit_breakers.{name}")))?;
            circuit_breakers.insert(name.clone(), breaker);
        }

        let mut server = config.server.clone();
        server.limit_connections = on.connection_limit;
        server.health = Some(health.handle());
        server.overload = Some(overload.clone());
        Ok(Stack {
            request_id,
            telemetry,
            security_headers,
            health_layer: on.health.then(|| health.clone()),
            health: health.handle(),
            load_shed,
            concurrency,
            timeout: on.timeout.then_some(config.limits.timeout),
            body_limit: on.body_limit.then_some(config.limits.max_body_bytes),
            bulkheads,
            circuit_breakers,
            server,
            overload,
        })
    }
}

/// The preset stack, built: the layers of [`PalisadeConfig`] in the order of Palisade's design,
/// applied to a `Router` by [`apply`](Self::apply), plus the per-route pieces (bulkheads,
/// circuit breakers) and the settings for [`serve`](crate::serve).
///
/// The order, outermost first, and why:
///
/// | order | layer | why here |
/// |---|---|---|
/// | listener | connection limit ([`serve`](crate::serve)) | refuse sockets before any HTTP work |
/// | 1 | request id | every response, rejections included, carries the id |
/// | 2 | telemetry | a span and a duration for everything, rejections included (the span records the request id) |
/// | 3 | security headers | on every response, rejections included |
/// | 4 | health probes | answered here: never limited, never shed |
/// | 5 | priority load shedding | classifies first (the limiter's critical reserve reads the class) and sheds low classes early |
/// | 6 | in-flight limit | the hard cap; publishes the overload signal the shedder and readiness read |
/// | 7 | body limit, timeout (tower-http) | bound each admitted request |
/// | per route | bulkhead, circuit breaker | [`bulkhead`](Self::bulkhead), [`circuit_breaker`](Self::circuit_breaker) with `Router::route_layer` |
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade::{PalisadeConfig, Stack};
///
/// let config = PalisadeConfig::from_toml(r#"
///     [concurrency]
///     max_in_flight = 200
///     [bulkheads.reports]
///     max_concurrent = 4
/// "#).unwrap();
/// let stack = Stack::builder()
///     .config(config)
///     .overload_state(palisade::core::OverloadState::new())
///     .build()
///     .unwrap();
/// let reports = Router::new()
///     .route("/reports", get(|| async { "report" }))
///     .route_layer(stack.bulkhead("reports").unwrap());
/// let app: Router = stack.apply(Router::new().route("/", get(|| async { "hello" })).merge(reports));
/// ```
#[derive(Debug, Clone)]
pub struct Stack {
    request_id: Option<RequestIdLayer>,
    telemetry: Option<TelemetryLayer>,
    security_headers: Option<SecurityHeadersLayer>,
    health_layer: Option<HealthLayer>,
    health: HealthHandle,
    load_shed: Option<LoadShedLayer>,
    concurrency: Option<ConcurrencyLimitLayer>,
    timeout: Option<Duration>,
    body_limit: Option<usize>,
    bulkheads: BTreeMap<String, BulkheadLayer>,
    circuit_breakers: BTreeMap<String, CircuitBreaker>,
    server: ServerConfig,
    overload: OverloadState,
}

impl Stack {
    /// A builder starting from the production defaults (the same as
    /// [`preset::production`](crate::preset::production)).
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// Wraps `router` in every layer that is on, in the documented order. The layers' state is
    /// shared: applying the stack to two routers makes them share one limit.
    pub fn apply<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        // One `Router::layer` call for the whole stack: axum boxes once per call (see
        // `optional.rs`). `ServiceBuilder` lists layers outermost first.
        router.layer(
            ServiceBuilder::new()
                .layer(Optional(self.request_id.clone()))
                .layer(Optional(self.telemetry.clone()))
                .layer(Optional(self.security_headers.clone()))
                .layer(Optional(self.health_layer.clone()))
                .layer(Optional(self.load_shed.clone()))
                .layer(Optional(self.concurrency.clone()))
                .layer(Optional(self.body_limit.map(RequestBodyLimitLayer::new)))
                // Innermost: tower-http's timeout needs the router's own (defaultable) body.
                .layer(Optional(self.timeout.map(|timeout| {
                    TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout)
                }))),
        )
    }

    /// The bulkhead configured as `[bulkheads.<name>]`, for `Router::route_layer`. Every call
    /// returns the same pool.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no bulkhead of that name is configured.
    pub fn bulkhead(&self, name: &str) -> Result<BulkheadLayer, ConfigError> {
        self.bulkheads.get(name).cloned().ok_or_else(|| {
            ConfigError::new(
                format!("bulkheads.{name}"),
                "not configured: add a [bulkheads.NAME] section",
            )
        })
    }

    /// A server layer around the circuit breaker configured as `[circuit_breakers.<name>]`, for
    /// `Router::route_layer`. Every call wraps the same breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no breaker of that name is configured.
    pub fn circuit_breaker(&self, name: &str) -> Result<CircuitBreakerLayer, ConfigError> {
        self.breaker(name).map(CircuitBreakerLayer::new)
    }

    /// The circuit breaker configured as `[circuit_breakers.<name>]` itself: its state, manual
    /// controls, and guard calls around non-HTTP work.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no breaker of that name is configured.
    pub fn breaker(&self, name: &str) -> Result<CircuitBreaker, ConfigError> {
        self.circuit_breakers.get(name).cloned().ok_or_else(|| {
            ConfigError::new(
                format!("circuit_breakers.{name}"),
                "not configured: add a [circuit_breakers.NAME] section",
            )
        })
    }

    /// Every configured bulkhead, by name.
    pub fn bulkheads(&self) -> impl Iterator<Item = (&str, &BulkheadLayer)> {
        self.bulkheads.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every configured circuit breaker, by name.
    pub fn breakers(&self) -> impl Iterator<Item = (&str, &CircuitBreaker)> {
        self.circuit_breakers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The health state: mark start-up complete, read probe status, begin a drain.
    pub fn health(&self) -> &HealthHandle {
        &self.health
    }

    /// The in-flight limiter's state, when that layer is on.
    pub fn request_limit(&self) -> Option<LimiterHandle> {
        self.concurrency.as_ref().map(ConcurrencyLimitLayer::handle)
    }

    /// The overload signal the stack's layers share.
    pub fn overload_state(&self) -> &OverloadState {
        &self.overload
    }

    /// The settings for [`serve`](crate::serve), wired to this stack's health (the drain fails
    /// readiness) and overload signal (the connection limit publishes into it).
    pub fn server_config(&self) -> ServerConfig {
        self.server.clone()
    }

    /// Binds the configured address (`server.addr`, `PALISADE_ADDR`), with `TCP_NODELAY` on
    /// every accepted connection: small responses and WebSocket frames leave at once instead of
    /// waiting for Nagle's algorithm (a WebSocket broadcast's p99 fell from 31 to 10 ms with it).
    /// Binding yourself? `listener.tap_io(|tcp| { let _ = tcp.set_nodelay(true); })`.
    ///
    /// # Errors
    ///
    /// The bind error, with the address in its message.
    pub async fn bind(&self) -> std::io::Result<NoDelayListener> {
        let addr = self.server.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        Ok(listener.tap_io(set_nodelay as fn(&mut TcpStream)))
    }
}

/// A `TcpListener` that sets `TCP_NODELAY` on each connection (see [`Stack::bind`]).
pub type NoDelayListener = TapIo<TcpListener, fn(&mut TcpStream)>;

fn set_nodelay(stream: &mut TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "cannot set TCP_NODELAY");
    }
}
