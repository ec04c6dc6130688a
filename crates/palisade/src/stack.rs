//! [`Stack`]: every layer of the preset, built once and applied to a `Router` in the right order.

use std::{
    collections::BTreeMap,
    convert::identity,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    serve::{ListenerExt, TapIo},
};
use palisade_bulkhead::BulkheadLayer;
use palisade_circuit_breaker::{Breaker, CircuitBreakerLayer};
use palisade_concurrency_limit_hysteresis::{
    ConcurrencyLimitBuilder, ConcurrencyLimitLayer, LimiterHandle,
};
use palisade_core::{ConfigError, OverloadState, SpanLevel};
use palisade_health::{Check, CheckResult, HealthBuilder, HealthHandle, HealthLayer};
use palisade_loadshed_priority::{LoadShedBuilder, LoadShedLayer};
use palisade_overload_monitor::{
    CloseConnectionsLayer, MonitorHandle, OverloadMonitor, OverloadMonitorBuilder, Pressure,
    PressureHandle,
};
use palisade_rate_limit::{BackendState, RateLimitLayer};
use palisade_request_guard::RequestGuardLayer;
use palisade_request_id::{RequestIdConfig, RequestIdLayer};
use palisade_security_headers::SecurityHeadersLayer;
use palisade_telemetry::TelemetryLayer;
use palisade_timeout::TimeoutLayer;
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceBuilder, layer::util::Identity};
use tower_http::limit::RequestBodyLimitLayer;

use crate::{
    PalisadeConfig, Server,
    client::{Client, ClientLayer},
    optional::Optional,
};

/// Builds a [`Stack`]: start from [`Stack::builder`] (the production defaults) or
/// [`preset::observe_only`](crate::preset::observe_only), adjust, then [`build`](Self::build).
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

        // Each layer the same way: from its section, with the runtime handles it needs, its
        // errors keyed under the section's name.
        let request_id = layer(on.request_id, "request_id", || {
            RequestIdLayer::from_config(request_id_config(&config))
        })?;
        let telemetry = layer(on.telemetry, "telemetry", || {
            TelemetryLayer::from_config(config.telemetry.clone())
        })?;
        let security_headers = layer(on.security_headers, "security_headers", || {
            SecurityHeadersLayer::from_config(config.security_headers.clone())
        })?;
        // Off until `[rate_limit]` defines a policy: limits are a contract with clients, with no
        // default a service could be assumed to want.
        let rate_limit = layer(
            on.rate_limit && config.rate_limit.is_configured(),
            "rate_limit",
            || RateLimitLayer::from_config(config.rate_limit.clone()),
        )?;
        let monitors = monitors(&config, &overload)?;
        // Built even when its layer is off: the drain sequence fails readiness through it.
        let resources = monitors.as_ref().map(|m| resources_check(m.pressure()));
        let shared_limits = rate_limit_backend_check(&config, rate_limit.as_ref());
        let health = readiness_checks
            .into_iter()
            .chain(resources)
            .chain(shared_limits)
            .fold(
                HealthBuilder::from(config.health.clone()),
                HealthBuilder::readiness_check,
            );
        let health = liveness_checks
            .into_iter()
            .fold(health, HealthBuilder::liveness_check)
            .overload_state(overload.clone())
            .build()
            .map_err(|e| e.within("health"))?;
        let load_shed = layer(on.load_shed, "load_shed", || {
            LoadShedBuilder::from(config.load_shed.clone())
                .overload_state(overload.clone())
                .build()
        })?;
        let request_guard = layer(on.request_guard, "request_guard", || {
            RequestGuardLayer::from_config(config.request_guard.clone())
        })?;
        let timeout = layer(on.timeout, "timeout", || {
            TimeoutLayer::from_config(config.timeout.clone())
        })?;
        let concurrency = layer(on.concurrency, "concurrency", || {
            ConcurrencyLimitBuilder::from(config.concurrency.clone())
                .overload_state(overload.clone())
                .build()
        })?;

        let mut server = Server::new(config.server.clone())
            .health(health.handle())
            .overload_state(overload.clone())
            .connection_limit(on.connection_limit);
        // Paused at critical only when the probes have a listener of their own.
        if let (Some(monitors), Some(_)) = (&monitors, config.server.ops.addr) {
            server = server.pause_accepting_at_critical(monitors.pressure());
        }
        // With an operations listener, the public port may leave the probes to it.
        let ops = config.server.ops.addr.is_some();
        let public_probes = on.health && (!ops || config.server.ops.public_probes);
        let mut stack = Stack {
            layers: Layers {
                request_id,
                security_headers,
                request_guard,
                close_connections: monitors
                    .as_ref()
                    .map(|m| CloseConnectionsLayer::new(m.pressure())),
                telemetry,
                health: public_probes.then(|| health.clone()),
                rate_limit,
                load_shed,
                concurrency,
                body_limit: on
                    .body_limit
                    .then(|| RequestBodyLimitLayer::new(config.limits.max_body_bytes)),
                timeout,
            },
            health: health.handle(),
            health_layer: health,
            bulkheads: bulkheads(&config)?,
            circuit_breakers: circuit_breakers(&config)?,
            clients: clients(&config)?,
            monitors: Arc::new(Mutex::new(monitors)),
            server,
            overload,
        };
        if ops {
            // The probes alone until the application adds its operators' routes.
            stack.server = stack.server.clone().ops(stack.ops(Router::new()));
        }
        Ok(stack)
    }
}

/// The `[bulkheads.NAME]` pools, each named after its table.
fn bulkheads(config: &PalisadeConfig) -> Result<BTreeMap<String, BulkheadLayer>, ConfigError> {
    config
        .bulkheads
        .iter()
        .map(|(name, bulkhead)| {
            let mut bulkhead = bulkhead.clone();
            bulkhead.name = name.clone().into();
            BulkheadLayer::from_config(bulkhead)
                .map(|layer| (name.clone(), layer))
                .map_err(|e| e.within(&format!("bulkheads.{name}")))
        })
        .collect()
}

/// The `[circuit_breakers.NAME]` breakers, each named after its table.
fn circuit_breakers(config: &PalisadeConfig) -> Result<BTreeMap<String, Breaker>, ConfigError> {
    config
        .circuit_breakers
        .iter()
        .map(|(name, breaker)| {
            let mut breaker = breaker.clone();
            breaker.name = name.clone().into();
            Breaker::from_config(breaker)
                .map(|breaker| (name.clone(), breaker))
                .map_err(|e| e.within(&format!("circuit_breakers.{name}")))
        })
        .collect()
}

/// The `[clients.NAME]` layers, built here once per name: every `stack.client(name, ..)` shares
/// its budget and breaker.
fn clients(config: &PalisadeConfig) -> Result<BTreeMap<String, ClientLayer>, ConfigError> {
    config
        .clients
        .iter()
        .map(|(name, client)| {
            ClientLayer::from_config(name.clone(), client.clone())
                .map(|layer| (name.clone(), layer))
                .map_err(|e| e.within(&format!("clients.{name}")))
        })
        .collect()
}

/// The `[overload]` monitors, built (sources registered, metrics described) with the stack and
/// running once [`Stack::spawn_monitors`] is called on a runtime; `None` when none is enabled.
fn monitors(
    config: &PalisadeConfig,
    overload: &OverloadState,
) -> Result<Option<OverloadMonitor>, ConfigError> {
    config
        .overload
        .any_enabled()
        .then(|| {
            OverloadMonitorBuilder::from(config.overload.clone())
                .overload_state(overload.clone())
                .build()
        })
        .transpose()
}

/// The readiness check `resources`: `warn` while a resource monitor is at warn or degrade (still
/// serving, shedding the low classes), `fail` at critical, naming the resource and its ratio.
fn resources_check(pressure: PressureHandle) -> Check {
    Check::from_fn("resources", move || {
        let pressure = pressure.clone();
        async move {
            let describe = |(resource, ratio): (&str, f64)| {
                format!("{resource} at {:.0} % of its limit", ratio * 100.0)
            };
            match (pressure.level(), pressure.worst()) {
                (Pressure::Normal, _) | (_, None) => CheckResult::pass(),
                (Pressure::Critical, Some(worst)) => CheckResult::fail(describe(worst)),
                (_, Some(worst)) => CheckResult::warn(describe(worst)),
            }
        }
    })
    // Two atomic reads: run at each probe (results kept for one sampling interval).
    .on_demand(Duration::from_millis(250))
}

/// The readiness check `rate_limit_backend`, with a shared backend: `warn` while Redis is
/// unreachable. Never `fail`: a replica that limits on its own (or answers 503 when failing
/// closed) is still one to send traffic to, and taking every replica out of rotation because
/// Redis is down would turn its outage into the service's.
fn rate_limit_backend_check(
    config: &PalisadeConfig,
    layer: Option<&RateLimitLayer>,
) -> Option<Check> {
    let layer = layer
        .filter(|_| config.rate_limit.shared_store().is_some())?
        .clone();
    let check = Check::from_fn("rate_limit_backend", move || {
        let state = layer.backend_state();
        async move {
            match state {
                BackendState::FailingOpen => {
                    CheckResult::warn("Redis unreachable: limiting at this replica's local share")
                }
                BackendState::FailingClosed => {
                    CheckResult::warn("Redis unreachable: refusing limited requests with 503")
                }
                _ => CheckResult::pass(),
            }
        }
    });
    Some(check.on_demand(Duration::from_millis(250)))
}

/// `[request_id]`, with one span per request: when the telemetry layer opens the server span,
/// that span names the request id (it reads it from the request), and a request id span around
/// it would only repeat the id, at the cost of a span per request.
fn request_id_config(config: &PalisadeConfig) -> RequestIdConfig {
    let mut request_id = config.request_id.clone();
    let telemetry = &config.telemetry;
    if config.layers.telemetry && telemetry.tracing && telemetry.span_level != SpanLevel::Off {
        request_id.span_level = SpanLevel::Off;
    }
    request_id
}

/// The layer when it is `on`, built by `build`, its error keyed under `section`.
fn layer<T>(
    on: bool,
    section: &str,
    build: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    on.then(build).transpose().map_err(|e| e.within(section))
}

/// The built layers of a [`Stack`], each `None` when switched off, for applying them another way:
/// in another order, or with a layer of your own between two of them. [`Stack::apply`] applies
/// them as listed here, outermost first. Each is a cheap handle on state shared with the stack.
///
/// ```
/// use axum::{Router, extract::Request, middleware::{self, Next}, response::Response, routing::get};
/// use palisade::{Optional, Stack};
/// use tower::ServiceBuilder;
///
/// // A layer of your own: runs after the probes, before shedding and limits.
/// async fn audit(request: Request, next: Next) -> Response {
///     next.run(request).await
/// }
///
/// let stack = Stack::builder()
///     .overload_state(palisade::core::OverloadState::new())
///     .build()
///     .unwrap();
/// let layers = stack.layers();
/// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
///     ServiceBuilder::new()
///         .layer(Optional(layers.request_id))
///         .layer(Optional(layers.security_headers))
///         .layer(Optional(layers.request_guard))
///         .layer(Optional(layers.close_connections))
///         .layer(Optional(layers.telemetry))
///         .layer(Optional(layers.health))
///         .layer(Optional(layers.rate_limit))
///         .layer(middleware::from_fn(audit))
///         .layer(Optional(layers.load_shed))
///         .layer(Optional(layers.concurrency))
///         .layer(Optional(layers.body_limit))
///         .layer(Optional(layers.timeout)),
/// );
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Layers {
    /// Request ids (`[request_id]`).
    pub request_id: Option<RequestIdLayer>,
    /// Security headers (`[security_headers]`).
    pub security_headers: Option<SecurityHeadersLayer>,
    /// The request guard (`[request_guard]`): before the layers below and the handler.
    pub request_guard: Option<RequestGuardLayer>,
    /// `Connection: close` on every response while a resource monitor (`[overload]`) is at
    /// degrade or worse; outside the limits, so refusals close too.
    pub close_connections: Option<CloseConnectionsLayer>,
    /// Spans and HTTP metrics (`[telemetry]`), labelled by the route template.
    pub telemetry: Option<TelemetryLayer>,
    /// Health probes (`[health]`).
    pub health: Option<HealthLayer>,
    /// Rate limits (`[rate_limit]`), when a policy is defined.
    pub rate_limit: Option<RateLimitLayer>,
    /// Priority load shedding (`[load_shed]`).
    pub load_shed: Option<LoadShedLayer>,
    /// The in-flight limit (`[concurrency]`).
    pub concurrency: Option<ConcurrencyLimitLayer>,
    /// tower-http's body limit (`limits.max_body_bytes`).
    pub body_limit: Option<RequestBodyLimitLayer>,
    /// The request timeout (`[timeout]`), answering `503` when a response has not started in
    /// time.
    pub timeout: Option<TimeoutLayer>,
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
/// | routing | axum's router | chooses the route (or the fallback) and names its template; every route gets the whole stack |
/// | 1 | request id | every response, refusals included, carries the id |
/// | 2 | security headers | on every response, refusals included |
/// | 3 | request guard | hostile targets refused first, so no handler and no layer below ever sees one |
/// | 3b | close connections under resource pressure | with `[overload]` monitors: `Connection: close` from the degrade level, refusals included |
/// | 4 | telemetry | a span and a duration for every routed request, refusals below included (the span records the request id) |
/// | 5 | health probes | answered here: never rate-limited, never limited, never shed |
/// | 6 | rate limits | per-client fairness (`429`) before capacity protection (`503`); only when `[rate_limit]` defines a policy |
/// | 7 | priority load shedding | classifies first (the limiter's critical reserve reads the class) and sheds low classes early |
/// | 8 | in-flight limit | the hard cap; publishes the overload signal the shedder and readiness read |
/// | 9 | body limit (tower-http), timeout | bound each admitted request; the timeout innermost, so it times the handler alone |
/// | per route | bulkhead, circuit breaker, rate limit | [`bulkhead`](Self::bulkhead), [`circuit_breaker`](Self::circuit_breaker) with `Router::route_layer` |
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
    layers: Layers,
    health: HealthHandle,
    /// The probes, for the operations listener even when the public port does not answer them.
    health_layer: HealthLayer,
    bulkheads: BTreeMap<String, BulkheadLayer>,
    circuit_breakers: BTreeMap<String, Breaker>,
    clients: BTreeMap<String, ClientLayer>,
    /// The `[overload]` monitors until [`Stack::spawn_monitors`] starts them.
    monitors: Arc<Mutex<Option<OverloadMonitor>>>,
    server: Server,
    overload: OverloadState,
}

/// The preset's layers in the documented order, outermost first (`ServiceBuilder` lists them
/// so): `$on` holds the layers on by default, each wrapped by `$wrap_on`; `$close` and `$rate`
/// are the two that are off by default (they need `[overload]` or `[rate_limit]`), as layers.
macro_rules! in_order {
    ($on:ident, $wrap_on:path, $close:expr, $rate:expr) => {
        ServiceBuilder::new()
            .layer($wrap_on($on.request_id))
            .layer($wrap_on($on.security_headers))
            .layer($wrap_on($on.request_guard))
            .layer($close)
            .layer($wrap_on($on.telemetry))
            .layer($wrap_on($on.health))
            .layer($rate)
            .layer($wrap_on($on.load_shed))
            .layer($wrap_on($on.concurrency))
            .layer($wrap_on($on.body_limit))
            // Innermost: the timeout times the handler, not the layers' own work.
            .layer($wrap_on($on.timeout))
    };
}

/// The layers that are on by default, all present: [`Stack::apply`]'s stack without switches.
struct OnByDefault {
    request_id: RequestIdLayer,
    security_headers: SecurityHeadersLayer,
    request_guard: RequestGuardLayer,
    telemetry: TelemetryLayer,
    health: HealthLayer,
    load_shed: LoadShedLayer,
    concurrency: ConcurrencyLimitLayer,
    body_limit: RequestBodyLimitLayer,
    timeout: TimeoutLayer,
}

impl OnByDefault {
    /// `Some` when every layer on by default is on in `layers`.
    fn all_on(layers: &Layers) -> Option<Self> {
        Some(Self {
            request_id: layers.request_id.clone()?,
            security_headers: layers.security_headers.clone()?,
            request_guard: layers.request_guard.clone()?,
            telemetry: layers.telemetry.clone()?,
            health: layers.health.clone()?,
            load_shed: layers.load_shed.clone()?,
            concurrency: layers.concurrency.clone()?,
            body_limit: layers.body_limit?,
            timeout: layers.timeout.clone()?,
        })
    }
}

impl Stack {
    /// A builder starting from the production defaults: every layer on (see
    /// [`PalisadeConfig`]).
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// Wraps `router` in every layer that is on, in the documented order. The layers' state is
    /// shared: applying the stack to two routers makes them share one limit.
    pub fn apply(&self, router: Router) -> Router {
        // One `Router::layer` call (axum boxes once per call, see `optional.rs`): every route and
        // the fallback get the whole stack, after the router has named the route template that
        // telemetry labels by and per-route limits key by. The guard is the first thing the
        // chosen route runs, so no handler and no layer below it sees a hostile target; every
        // answer, refusals included, carries the request id and the security headers.
        //
        // Each `Optional` level costs every request a match, a move of the response and a level
        // of `Either` in every body call (about 200 instructions). Axum boxes the stack anyway,
        // so while every layer that is on by default is on, the stack is built for what is on:
        // the two layers off by default are there or not (`Identity`), with no switch at all.
        // Any other combination gets the general stack, every layer switchable. All are the
        // same layers in the same order (`in_order!`).
        let layers = &self.layers;
        let (close, rate) = (layers.close_connections.clone(), layers.rate_limit.clone());
        let none = Identity::new;
        match (OnByDefault::all_on(layers), close, rate) {
            (Some(on), None, None) => router.layer(in_order!(on, identity, none(), none())),
            (Some(on), Some(close), None) => router.layer(in_order!(on, identity, close, none())),
            (Some(on), None, Some(rate)) => router.layer(in_order!(on, identity, none(), rate)),
            (Some(on), Some(close), Some(rate)) => {
                router.layer(in_order!(on, identity, close, rate))
            }
            (None, close, rate) => {
                let layers = layers.clone();
                router.layer(in_order!(layers, Optional, Optional(close), Optional(rate)))
            }
        }
    }

    /// `routes` for the operations listener (`[server.ops] addr`): the stack's probes and request
    /// ids around them, and nothing that limits: no connection limit, no rate limit, no shedding.
    /// Serve them with [`Server::ops`](crate::Server::ops):
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use palisade::{PalisadeConfig, Stack};
    ///
    /// let config = PalisadeConfig::from_toml("[server.ops]\naddr = \"127.0.0.1:9090\"").unwrap();
    /// let stack = Stack::builder()
    ///     .config(config)
    ///     .overload_state(palisade::core::OverloadState::new())
    ///     .build()
    ///     .unwrap();
    /// let admin = Router::new().route("/admin/reset", post(|| async { "reset" }));
    /// let server = stack.server().ops(stack.ops(admin));
    /// # let _ = server;
    /// ```
    pub fn ops(&self, routes: Router) -> Router {
        routes.layer(
            ServiceBuilder::new()
                .layer(Optional(self.layers.request_id.clone()))
                .layer(self.health_layer.clone()),
        )
    }

    /// The built layers, to apply in another order or with layers of your own between them (see
    /// [`Layers`]). The state is shared with this stack.
    pub fn layers(&self) -> Layers {
        self.layers.clone()
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
    pub fn breaker(&self, name: &str) -> Result<Breaker, ConfigError> {
        self.circuit_breakers.get(name).cloned().ok_or_else(|| {
            ConfigError::new(
                format!("circuit_breakers.{name}"),
                "not configured: add a [circuit_breakers.NAME] section",
            )
        })
    }

    /// `inner` (an HTTP client: hyper-util's, or any tower service taking
    /// `Request<ReplayBody<B>>`) wrapped in the client stack configured as `[clients.<name>]`:
    /// propagation, budgeted retries, the upstream's breaker and the attempt timeout (see
    /// [`client`](crate::client)). Every call shares the same budget and breaker.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    /// use palisade::{PalisadeConfig, Stack, retry::ReplayBody};
    ///
    /// let config = PalisadeConfig::from_toml(r#"
    ///     [clients.payments]
    ///     attempt_timeout = 0.5
    ///     [clients.payments.retry.budget]
    ///     ratio = 0.1
    /// "#).unwrap();
    /// let stack = Stack::builder()
    ///     .config(config)
    ///     .overload_state(palisade::core::OverloadState::new())
    ///     .build()
    ///     .unwrap();
    /// let http = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    /// let payments = stack.client("payments", http).unwrap();
    /// # let _ = payments;
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no client of that name is configured.
    pub fn client<S>(&self, name: &str, inner: S) -> Result<Client<S>, ConfigError> {
        self.client_layer(name).map(|layer| layer.layer(inner))
    }

    /// The layer of the client configured as `[clients.<name>]`: its breaker and budget, or to
    /// wrap several inner clients that share them.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no client of that name is configured.
    pub fn client_layer(&self, name: &str) -> Result<ClientLayer, ConfigError> {
        self.clients.get(name).cloned().ok_or_else(|| {
            ConfigError::new(
                format!("clients.{name}"),
                "not configured: add a [clients.NAME] section",
            )
        })
    }

    /// Every configured client, by name.
    pub fn clients(&self) -> impl Iterator<Item = (&str, &ClientLayer)> {
        self.clients.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every configured bulkhead, by name.
    pub fn bulkheads(&self) -> impl Iterator<Item = (&str, &BulkheadLayer)> {
        self.bulkheads.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every configured circuit breaker, by name.
    pub fn breakers(&self) -> impl Iterator<Item = (&str, &Breaker)> {
        self.circuit_breakers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The health state: mark start-up complete, read probe status, begin a drain.
    pub fn health(&self) -> &HealthHandle {
        &self.health
    }

    /// The in-flight limiter's state, when that layer is on.
    pub fn request_limit(&self) -> Option<LimiterHandle> {
        self.layers
            .concurrency
            .as_ref()
            .map(ConcurrencyLimitLayer::handle)
    }

    /// The overload signal the stack's layers share.
    pub fn overload_state(&self) -> &OverloadState {
        &self.overload
    }

    /// Starts the `[overload]` resource monitors (memory, file descriptors, runtime lag) on the
    /// current Tokio runtime, publishing into this stack's overload signal; `None` when none is
    /// enabled, or they were started already. Keep the handle while serving: dropping it stops
    /// them.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn_monitors(&self) -> Option<MonitorHandle> {
        self.monitors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .map(OverloadMonitor::spawn)
    }

    /// What [`serve`](crate::serve) runs with: the `[server]` settings, wired to this stack's
    /// health (the drain fails readiness) and overload signal (the connection limit publishes
    /// into it).
    pub fn server(&self) -> Server {
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
        let addr = self.server.config().addr;
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
