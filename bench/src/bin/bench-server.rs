//! A server under test, started by `palisade-bench` as its own process:
//! `bench-server <scenario> <system> [--threads N] [--option value]...`.
//! Prints `listening on <addr>` and serves until killed.

use std::process::ExitCode;

use palisade_bench::{scenario::ServerArgs, scenarios, servers::serve};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench-server <scenario> <system> [--option value]...";
    let scenario = args.next().ok_or(usage)?;
    let system = args.next().ok_or(usage)?;
    let scenario =
        scenarios::find(&scenario).ok_or_else(|| format!("unknown scenario {scenario:?}"))?;
    let options = ServerArgs::parse(args)?;
    let threads = usize::try_from(options.number("threads", 1)?).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let app = scenario.server(&system, &options)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "listening on {}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        serve(app, listener).await
    })
}
