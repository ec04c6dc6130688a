//! `cargo run --release -p production_server`: the Palisade example service.
//!
//! Configuration: `palisade.toml` beside this crate (compiled in), then the file named by
//! `PALISADE_CONFIG` (or `./palisade.toml`), then `PALISADE_*__*` variables such as
//! `PALISADE_CONCURRENCY__MAX_IN_FLIGHT=500`. `PALISADE_ADDR` (default `127.0.0.1:8080`) is
//! where it listens; `RUST_LOG` (default `info`) what it logs. Traces are exported over OTLP
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the other `OTEL_*` variables apply); metrics are
//! served at `/metrics`.

use std::process::ExitCode;

use axum::serve::Listener;
use palisade::{
    core::OverloadState,
    telemetry::{PrometheusMetrics, TracingConfig},
};

#[tokio::main]
async fn main() -> ExitCode {
    // The configuration first: it says how to log (`[telemetry] log_format`).
    let config = match production_server::config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    // Logs to stdout (RUST_LOG), and spans over OTLP when a collector is configured: a demo
    // without one should not warn about an unreachable localhost:4317 every minute.
    let collector = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some());
    let tracing = TracingConfig::from_env().map(|mut tracing| {
        tracing.enabled &= collector;
        tracing.log_format = config.telemetry.log_format;
        tracing
    });
    let tracing = match tracing.map(|tracing| tracing.init()) {
        Ok(Ok(guard)) => guard,
        Ok(Err(err)) => {
            eprintln!("cannot start tracing: {err}");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    // Before the stack: the layers register their metric handles when they are built.
    let metrics = match PrometheusMetrics::install() {
        Ok(metrics) => metrics,
        Err(err) => {
            eprintln!("cannot install the Prometheus recorder: {err}");
            return ExitCode::FAILURE;
        }
    };

    let (stack, state) = match production_server::build(config, OverloadState::global()) {
        Ok(built) => built,
        Err(err) => {
            eprintln!("configuration error: {err}");
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
    // Memory, descriptors and runtime lag, sampled while the server runs.
    let _monitors = stack.spawn_monitors();
    let local = listener.local_addr().map_or_else(
        |_| stack.server().config().addr.to_string(),
        |a| a.to_string(),
    );
    let scheme = if stack.server().config().tls.is_enabled() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{local}");
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
        ("GET ", "/metrics"),
        ("WS  ", "/ws"),
        ("GET ", "/health/live"),
        ("GET ", "/health/ready"),
        ("GET ", "/health/startup"),
    ] {
        println!("  {method} {scheme}://{local}{path}");
    }

    tokio::spawn(production_server::broadcast_updates(
        stack.clone(),
        state.clone(),
        std::time::Duration::from_secs(1),
    ));
    let (app, server) = production_server::public_app_and_server(&stack, state, &metrics);
    stack.health().mark_started();
    // On SIGTERM: readiness fails at once, the server keeps serving for the propagation delay
    // (so Kubernetes removes the pod from its endpoints), then stops accepting and lets
    // in-flight requests finish, up to the drain deadline. A second Ctrl-C skips the waits.
    let outcome = palisade::serve(listener, app, server).await;
    // Flush the spans still queued for the collector.
    if let Err(err) = tracing.shutdown().await {
        eprintln!("tracing shutdown: {err}");
    }
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("server failed: {err}");
            ExitCode::FAILURE
        }
    }
}
