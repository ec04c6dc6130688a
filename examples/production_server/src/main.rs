//! `cargo run --release -p production_server`: the Palisade example service.
//!
//! Environment: `PALISADE_ADDR` (default `127.0.0.1:8080`), `RUST_LOG` (default `info`).

use std::{io::IsTerminal, net::SocketAddr, process::ExitCode};

use palisade::core::OverloadState;
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
    ] {
        println!("  {method} http://{local}{path}");
    }

    match serve(listener, app(&layers, state), shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("server stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server failed");
            ExitCode::FAILURE
        }
    }
}
