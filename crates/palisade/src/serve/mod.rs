//! [`serve`]: a production HTTP/1.1 server loop for an axum `Router`.
//!
//! What `axum::serve` leaves out, and this adds:
//!
//! - the **connection limit** on the listener (high/low water marks, canned 503);
//! - **client timeouts**: a request head must arrive within `header_read_timeout` of its first
//!   byte (slowloris), a kept-alive connection may idle `idle_timeout`, and neither clock runs
//!   while a request is being served or after a WebSocket upgrade (see `io.rs` for why these are
//!   separate);
//! - **header limits**: more than `max_header_bytes` or `max_headers` is answered `431`;
//! - **keep-alive limits**: `keep_alive`, `max_requests_per_connection`;
//! - **graceful shutdown** on SIGTERM/SIGINT with the health crate's [`Drain`] sequence
//!   (readiness fails, propagation delay, stop accepting, deadline), a second signal skipping the
//!   remaining waits, and a [`ServeReport`] of what drained and what was cut off.

mod connection;
mod io;
mod metrics;
mod report;
mod signal;
mod tls;

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc};

use axum::{Router, serve::Listener};
use palisade_concurrency_limit_hysteresis::ConnectionLimitListener;
use palisade_core::OverloadState;
use palisade_health::{Drain, HealthHandle, HealthLayer};
use palisade_overload_monitor::{Pressure, PressureHandle};
use tokio::{sync::watch, task::JoinSet};

pub(crate) use report::Counters;
pub use report::ServeReport;
pub use signal::shutdown_signal;
/// The TLS metric names.
#[cfg(feature = "tls")]
pub use tls::metrics as tls_metrics;
pub use tls::{ClientAuth, TlsConfig, TlsVersion};

/// The TLS acceptor, when `[server.tls]` is on.
#[cfg(feature = "tls")]
type MaybeTls = Option<Arc<tls::Tls>>;
#[cfg(not(feature = "tls"))]
type MaybeTls = Option<std::convert::Infallible>;

use crate::ServerConfig;
use connection::{Http1Settings, serve_connection};

/// What [`serve`] runs with: the plain [`ServerConfig`] and the runtime handles it needs.
///
/// [`Stack::server`](crate::Stack::server) gives one wired to the stack (the drain fails the
/// stack's readiness; the connection limit publishes into the stack's overload signal). Without a
/// stack, a `ServerConfig` converts into one: the connection limit on, a private health state, and
/// [`OverloadState::global`].
///
/// ```
/// use palisade::{Server, ServerConfig};
///
/// let server = Server::new(ServerConfig::default())
///     .overload_state(palisade::core::OverloadState::new())
///     .connection_limit(false);
/// assert!(!server.limits_connections());
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    config: ServerConfig,
    health: Option<HealthHandle>,
    overload: Option<OverloadState>,
    limit_connections: bool,
    ops: Option<Router>,
    pause: Option<PressureHandle>,
}

impl Server {
    /// `config` with the connection limit on, a private health state and the global overload
    /// signal.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            health: None,
            overload: None,
            limit_connections: true,
            ops: None,
            pause: None,
        }
    }

    /// What the operations listener (`ops.addr`) serves: probes, `/metrics`, admin routes.
    /// [`Stack::ops`](crate::Stack::ops) builds one with the stack's probes, and
    /// [`Stack::server`](crate::Stack::server) sets the probes alone when `ops.addr` is set.
    #[must_use]
    pub fn ops(mut self, app: Router) -> Self {
        self.ops = Some(app);
        self
    }

    /// The health state whose readiness the drain fails first.
    #[must_use]
    pub fn health(mut self, health: HealthHandle) -> Self {
        self.health = Some(health);
        self
    }

    /// Where the connection limit publishes. Default: [`OverloadState::global`].
    #[must_use]
    pub fn overload_state(mut self, state: OverloadState) -> Self {
        self.overload = Some(state);
        self
    }

    /// Stops accepting public connections while `pressure` is at
    /// [`Pressure::Critical`](palisade_overload_monitor::Pressure::Critical) (new clients wait in
    /// the listen backlog, or go elsewhere), and resumes when it eases. The operations listener
    /// keeps accepting, which is why [`Stack`](crate::Stack) sets this only when the probes have
    /// one (`[server.ops] addr`): paused on a shared port, the kubelet's probes would fail too.
    #[must_use]
    pub fn pause_accepting_at_critical(mut self, pressure: PressureHandle) -> Self {
        self.pause = Some(pressure);
        self
    }

    /// Whether the connection limit is applied. Default on.
    #[must_use]
    pub fn connection_limit(mut self, on: bool) -> Self {
        self.limit_connections = on;
        self
    }

    /// Whether the connection limit is applied.
    pub fn limits_connections(&self) -> bool {
        self.limit_connections
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The configuration, to adjust in place.
    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }
}

impl From<ServerConfig> for Server {
    fn from(config: ServerConfig) -> Self {
        Self::new(config)
    }
}

/// Serves `app` on `listener` until SIGTERM or Ctrl-C, then drains (see [`ServerConfig`] and
/// the health crate's [`Drain`]) and returns the report. A second signal during the drain skips
/// the remaining waits.
///
/// Handlers can extract `ConnectInfo<SocketAddr>` as with
/// `into_make_service_with_connect_info`.
///
/// # Errors
///
/// An `InvalidInput` error for an invalid configuration, or the listener's address error.
pub async fn serve<L>(
    listener: L,
    app: Router,
    server: impl Into<Server>,
) -> std::io::Result<ServeReport>
where
    L: Listener<Addr = SocketAddr>,
{
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<Drain>();
    let trigger = async move {
        shutdown_signal().await;
        if let Ok(drain) = drain_rx.await {
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::warn!("second shutdown signal: skipping the rest of the drain");
                drain.expedite();
            });
        }
    };
    serve_inner(listener, app, server.into(), trigger, Some(drain_tx)).await
}

/// [`serve`], with the shutdown started by `trigger` instead of process signals (tests, or a
/// server embedded in a larger program). The drain sequence is the same.
///
/// # Errors
///
/// An `InvalidInput` error for an invalid configuration, or the listener's address error.
pub async fn serve_with_shutdown<L, F>(
    listener: L,
    app: Router,
    server: impl Into<Server>,
    trigger: F,
) -> std::io::Result<ServeReport>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    serve_inner(listener, app, server.into(), trigger, None).await
}

async fn serve_inner<L, F>(
    listener: L,
    app: Router,
    server: Server,
    trigger: F,
    drain_for_trigger: Option<tokio::sync::oneshot::Sender<Drain>>,
) -> std::io::Result<ServeReport>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    let invalid = |e: palisade_core::ConfigError| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.within("server").to_string(),
        )
    };
    let Server {
        config,
        health,
        overload,
        limit_connections,
        ops,
        pause,
    } = server;
    config.validate().map_err(invalid)?;
    metrics::describe();
    // Without the stack's health layer the drain still runs, on a private health state.
    let health = health.unwrap_or_else(|| HealthLayer::new().handle());
    let drain = Drain::new(health, config.drain).map_err(invalid)?;
    if let Some(sender) = drain_for_trigger {
        let _ = sender.send(drain.clone());
    }
    #[cfg(feature = "tls")]
    let tls: MaybeTls = if config.tls.is_enabled() {
        Some(tls::Tls::new(&config.tls)?)
    } else {
        None
    };
    #[cfg(not(feature = "tls"))]
    let tls: MaybeTls = None;
    #[cfg(feature = "tls")]
    let watcher = tls.as_ref().map(tls::Tls::watch);
    let settings = Arc::new(Http1Settings {
        timeouts: io::Timeouts {
            header_read: config.header_read_timeout,
            idle: config.idle_timeout,
        },
        keep_alive: config.keep_alive,
        max_requests: config.max_requests_per_connection,
        max_header_bytes: config.max_header_bytes,
        max_headers: config.max_headers,
    });
    // The operations listener: no connection limit, no limiting layers; it stops when the public
    // server has drained, so probes report the drain until the end.
    let ops = match (config.ops.addr, ops) {
        (None, _) => None,
        (Some(addr), Some(app)) => Some(start_ops(addr, app, settings.clone()).await?),
        (Some(_), None) => {
            return Err(invalid(palisade_core::ConfigError::new(
                "ops.addr",
                "is set, but the server has no operations app (Server::ops or Stack::server)",
            )));
        }
    };
    let report = if limit_connections {
        let overload = overload.unwrap_or_else(|| OverloadState::global().clone());
        let listener =
            ConnectionLimitListener::with_overload_state(listener, config.connections, overload)
                .map_err(|e| invalid(e.within("connections")))?;
        run(listener, app, settings, drain, trigger, pause, tls).await
    } else {
        run(listener, app, settings, drain, trigger, pause, tls).await
    };
    #[cfg(feature = "tls")]
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some((stop, task)) = ops {
        let _ = stop.send(());
        let _ = task.await;
    }
    report
}

/// Binds the operations listener and serves `app` on it until the returned sender fires.
async fn start_ops(
    addr: SocketAddr,
    app: Router,
    settings: Arc<Http1Settings>,
) -> std::io::Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), Infallible>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (server.ops.addr): {e}"),
        )
    })?;
    tracing::info!(local = %listener.local_addr()?, "serving operations (probes, metrics, admin)");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(accept_loop(
        listener,
        app,
        settings,
        // Its own counts: the report speaks of the public server's requests.
        Arc::new(Counters::default()),
        async {
            let _ = stopped.await;
        },
        // Never paused: the probes live here.
        None,
        // Plain HTTP: a cluster-internal port for the kubelet and the scraper.
        None,
    ));
    Ok((stop, task))
}

async fn run<L, F>(
    listener: L,
    app: Router,
    settings: Arc<Http1Settings>,
    drain: Drain,
    trigger: F,
    pause: Option<PressureHandle>,
    tls: MaybeTls,
) -> std::io::Result<ServeReport>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr()?;
    if tls.is_some() {
        tracing::info!(%local, "serving HTTP/1.1 over TLS");
    } else {
        tracing::info!(%local, "serving HTTP/1.1");
    }
    let counters = Arc::new(Counters::default());
    let server = accept_loop(
        listener,
        app,
        settings,
        counters.clone(),
        drain.signal(trigger),
        pause,
        tls,
    );
    let outcome = match drain.run(server).await {
        Ok(outcome) => outcome,
        Err(never) => match never {},
    };
    let report = counters.report(outcome);
    match outcome {
        palisade_health::DrainOutcome::Drained => tracing::info!(%report, "server stopped"),
        palisade_health::DrainOutcome::DeadlineExceeded => {
            tracing::warn!(%report, "server stopped");
        }
    }
    Ok(report)
}

/// Accepts until `stop` resolves, then closes the listener, asks every connection to finish,
/// and waits for them. Dropping this future (at the drain deadline) aborts the connections.
/// How often a paused accept loop looks at the pressure again.
const PAUSE_RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

async fn accept_loop<L>(
    mut listener: L,
    app: Router,
    settings: Arc<Http1Settings>,
    counters: Arc<Counters>,
    stop: impl Future<Output = ()>,
    pause: Option<PressureHandle>,
    tls: MaybeTls,
) -> Result<(), Infallible>
where
    L: Listener<Addr = SocketAddr>,
{
    let (close, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    let mut paused = false;
    loop {
        let critical = pause
            .as_ref()
            .is_some_and(|p| p.level() == Pressure::Critical);
        if critical != paused {
            paused = critical;
            if paused {
                tracing::warn!("resource pressure is critical: not accepting new connections");
            } else {
                tracing::info!("resource pressure eased: accepting connections again");
            }
        }
        tokio::select! {
                    biased;
                    () = &mut stop => break,
                    Some(ended) = connections.join_next(), if !connections.is_empty() => {
                        if let Err(err) = ended {
                            tracing::error!(%err, "a connection task failed");
                        }
                    }
                    // Paused: look again soon (the monitors sample every 250 ms by default).
                    () = tokio::time::sleep(PAUSE_RECHECK), if paused => {}
                    (io, remote) = listener.accept(), if !paused => {
                        let (app, settings, counters, closing) =
                            (app.clone(), settings.clone(), counters.clone(), closing.clone());
                        // Without the `tls` feature the acceptor is `Option<Infallible>`: `Copy`.
                        #[cfg_attr(not(feature = "tls"), allow(clippy::clone_on_copy))]
                        match tls.clone() {
                            // The handshake runs in the connection's task, never in this loop.
                            #[cfg(feature = "tls")]
        Some(tls) => connections.spawn(async move {
                                // A drain does not wait for a handshake: no request has started on it.
                                let mut drain = closing.clone();
                                let handshake = tokio::select! {
                                    handshake = tls.handshake(io, remote) => handshake,
                                    _ = drain.wait_for(|closing| *closing) => None,
                                };
                                if let Some((stream, identity)) = handshake {
                                    serve_connection(stream, remote, app, settings, counters, closing, identity).await;
                                }
                            }),
                            _ => connections.spawn(serve_connection(
                                io, remote, app, settings, counters, closing, None,
                            )),
                        };
                    }
                }
    }
    drop(listener);
    counters.stopped_accepting();
    let _ = close.send(true);
    while let Some(ended) = connections.join_next().await {
        if let Err(err) = ended {
            tracing::error!(%err, "a connection task failed");
        }
    }
    Ok(())
}
