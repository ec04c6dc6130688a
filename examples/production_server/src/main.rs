//! `cargo run --release -p production_server`: the Palisade example service.
//!
//! Environment: `PALISADE_ADDR` (default `127.0.0.1:8080`), `RUST_LOG` (default `info`),
//! `PALISADE_DRAIN_DELAY_MS` (how long readiness fails before the server stops accepting on
//! SIGTERM; default 5000).

use std::{io::IsTerminal, net::SocketAddr, process::ExitCode};

use palisade::{
    core::{ConfigError, OverloadState},
    health::{Drain, DrainConfig, DrainOutcome},
};
use production_server::{Layers, app, limit_connections, serve, shutdown_signal};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

const DEFAULT_ADDR: &str = "127.0.0.1:8080";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colour for people at a terminal, plain text for log collectors and pipes.
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let addr = std::env::var("PALISADE_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!(
                "PALISADE_ADDR={addr:?} is not a socket address such as {DEFAULT_ADDR}: {err}"
            );
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let overload = OverloadState::global();
    let (listener, layers) = match limit_connections(listener, overload)
        .and_then(|listener| Ok((listener, Layers::new(overload)?)))
    {
        Ok(built) => built,
        Err(err) => {
            eprintln!("invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let state = layers.state(Some(listener.handle()));
    let health = layers.health.handle();
    let drain = match drain_config().and_then(|config| Drain::new(health.clone(), config)) {
        Ok(drain) => drain,
        Err(err) => {
            eprintln!("invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    println!("listening on http://{local}");
    println!("try:");
    for (method, path) in [
        ("GET ", "/"),
        ("GET ", "/api/items"),
        ("GET ", "/api/items/1"),
        ("GET ", "/api/slow?ms=500"),
        ("GET ", "/api/flaky"),
        ("POST", "/admin/dependency/fail"),
        ("POST", "/admin/dependency/heal"),
        ("GET ", "/admin/status"),
        ("GET ", "/health/live"),
        ("GET ", "/health/ready"),
        ("GET ", "/health/startup"),
    ] {
        println!("  {method} http://{local}{path}");
    }

    // A second Ctrl-C during the drain skips the remaining waits (handy at a terminal).
    let expedite = drain.clone();
    tokio::spawn(async move {
        expedite.health().draining().await;
        let _ = tokio::signal::ctrl_c().await;
        expedite.expedite();
    });
    health.mark_started();
    // On SIGTERM: readiness fails at once, the server keeps serving for the propagation delay
    // (so Kubernetes removes the pod from its endpoints), then stops accepting and lets
    // in-flight requests finish, up to the drain deadline.
    let server = serve(
        listener,
        app(&layers, state),
        drain.signal(shutdown_signal()),
    );
    match drain.run(server).await {
        Ok(DrainOutcome::Drained) => {
            tracing::info!("server drained and stopped cleanly");
            ExitCode::SUCCESS
        }
        Ok(DrainOutcome::DeadlineExceeded) => {
            tracing::warn!("drain deadline passed with requests still in flight; exiting");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// The drain sequence's timings: the defaults (5 s propagation delay, 20 s deadline, matching
/// `deploy/kubernetes/`), with the delay from `PALISADE_DRAIN_DELAY_MS` when set.
fn drain_config() -> Result<DrainConfig, ConfigError> {
    let mut config = DrainConfig::default();
    if let Ok(text) = std::env::var("PALISADE_DRAIN_DELAY_MS") {
        let millis: u64 = text.parse().map_err(|_| {
            ConfigError::new(
                "PALISADE_DRAIN_DELAY_MS",
                format!("{text:?} is not a number of milliseconds"),
            )
        })?;
        config.propagation_delay = std::time::Duration::from_millis(millis);
    }
    Ok(config)
}
