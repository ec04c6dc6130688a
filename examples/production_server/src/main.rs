//! `cargo run --release -p production_server`: the Palisade example service.
//!
//! Configuration: `palisade.toml` beside this crate (compiled in), then the file named by
//! `PALISADE_CONFIG` (or `./palisade.toml`), then `PALISADE_*__*` variables such as
//! `PALISADE_CONCURRENCY__MAX_IN_FLIGHT=500`. `PALISADE_ADDR` (default `127.0.0.1:8080`) is
//! where it listens; `RUST_LOG` (default `info`) what it logs.

use std::{io::IsTerminal, process::ExitCode};

use palisade::core::OverloadState;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colour for people at a terminal, plain text for log collectors and pipes.
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let built = production_server::config()
        .map_err(|err| err.to_string())
        .and_then(|config| {
            production_server::build(config, OverloadState::global())
                .map_err(|err| format!("configuration error: {err}"))
        });
    let (stack, state) = match built {
        Ok(built) => built,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let listener = match stack.bind().await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().map_or_else(
        |_| stack.server_config().addr.to_string(),
        |a| a.to_string(),
    );
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

    let app = production_server::app(&stack, state);
    stack.health().mark_started();
    // On SIGTERM: readiness fails at once, the server keeps serving for the propagation delay
    // (so Kubernetes removes the pod from its endpoints), then stops accepting and lets
    // in-flight requests finish, up to the drain deadline. A second Ctrl-C skips the waits.
    match palisade::serve(listener, app, stack.server_config()).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server failed");
            ExitCode::FAILURE
        }
    }
}
