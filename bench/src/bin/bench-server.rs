//! A server under test, started by the bench runner as its own process:
//! `bench-server <system> [--workers N] [--work-ms N] [--max-in-flight N] [--threads N]`.
//! Prints `listening on <addr>` and serves until killed.

// Counts and durations are converted to f64 for rates and percentiles; they stay far below
// 2^52, where the conversion is exact.
#![allow(clippy::cast_precision_loss)]

use std::{process::ExitCode, time::Duration};

use palisade_bench::servers::{ServerSettings, System, serve};

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
    let system = args
        .next()
        .ok_or("usage: bench-server <system> [options]")?;
    let system = System::from_id(&system).ok_or_else(|| format!("unknown system {system:?}"))?;
    let mut settings = ServerSettings {
        workers: 8,
        work: Duration::from_millis(10),
        max_in_flight: 12,
    };
    let mut threads = 1usize;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--workers" => settings.workers = usize::try_from(number).map_err(|e| e.to_string())?,
            "--work-ms" => settings.work = Duration::from_millis(number),
            "--max-in-flight" => {
                settings.max_in_flight = u32::try_from(number).map_err(|e| e.to_string())?;
            }
            "--threads" => threads = usize::try_from(number).map_err(|e| e.to_string())?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "listening on {}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        serve(system, listener, settings).await
    })
}
