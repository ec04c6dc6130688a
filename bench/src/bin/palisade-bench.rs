//! `palisade-bench <scenario> [--quick] [--out DIR]`: the load scenarios behind
//! `cargo xtask bench`. Each scenario compares several systems in the same run and writes a
//! markdown table (stdout), `<out>/<scenario>.json` and `<out>/<scenario>.svg`.

// Counts and durations are converted to f64 for rates and percentiles; they stay far below
// 2^52, where the conversion is exact.
#![allow(clippy::cast_precision_loss)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use palisade_bench::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::{ServerProcess, cores, pin_generator},
    report::{self, Row},
    servers::System,
};

const USAGE: &str = "usage: palisade-bench <baseline|overload> [--quick] [--out DIR]";

/// Timings of a scenario.
#[derive(Clone, Copy)]
struct Timing {
    duration: Duration,
    warmup: Duration,
    grace: Duration,
    rounds: usize,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("palisade-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().ok_or(USAGE)?;
    let (mut quick, mut out) = (false, PathBuf::from("target/bench"));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let pinned = pin_generator();
    println!(
        "machine: {} cores; server pinned to core 0, generator to core 1: {}",
        cores(),
        if pinned {
            "yes"
        } else {
            "no (fewer than 2 cores or no taskset)"
        }
    );
    let timing = if quick {
        // Each scenario in well under a minute: a smoke test of the harness, not a measurement.
        Timing {
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            grace: Duration::from_millis(500),
            rounds: 1,
        }
    } else {
        Timing {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            grace: Duration::from_secs(3),
            rounds: 3,
        }
    };
    // The generator runs on one thread: it is pinned to one core anyway, and a single thread keeps
    // its bookkeeping uncontended.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (title, rows) = match scenario.as_str() {
        "baseline" => (
            "baseline: hello world, closed loop",
            runtime.block_on(baseline(timing))?,
        ),
        "overload" => (
            "overload: bounded-capacity route, open loop",
            runtime.block_on(overload(timing))?,
        ),
        other => return Err(format!("unknown scenario {other:?}\n{USAGE}")),
    };
    println!("\n{}", report::markdown(&rows));
    let json = out.join(format!("{scenario}.json"));
    let svg = out.join(format!("{scenario}.svg"));
    report::write_json(&json, &rows)?;
    report::write_svg(&svg, title, &rows)?;
    println!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}

fn spec(
    target: std::net::SocketAddr,
    mode: Mode,
    connections: usize,
    path: &str,
    timing: Timing,
) -> LoadSpec {
    LoadSpec {
        target,
        mode,
        connections,
        duration: timing.duration,
        warmup: timing.warmup,
        grace: timing.grace,
        mix: vec![RequestClass::get("all", path)],
    }
}

/// Peak throughput of a hello-world route: bare hyper, bare axum and axum + the Palisade stack, alternating
/// systems round by round and keeping each system's median round.
async fn baseline(timing: Timing) -> Result<Vec<Row>, String> {
    let systems = [System::BareHyper, System::BareAxum, System::PalisadeStack];
    let args = vec!["--max-in-flight".to_owned(), "1000".to_owned()];
    let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); systems.len()];
    for round in 0..timing.rounds {
        for (index, system) in systems.into_iter().enumerate() {
            let server = ServerProcess::start(system, &args)?;
            let report =
                load::run(spec(server.addr, Mode::ClosedLoop, 64, "/hello", timing)).await?;
            let row = Row::from_report(system.name(), None, &report).remove(0);
            eprintln!(
                "round {} {:<32} {:>9.0} rps",
                round + 1,
                system.name(),
                row.achieved_rps
            );
            rounds[index].push(row);
        }
    }
    let mut rows: Vec<Row> = rounds
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.achieved_rps.total_cmp(&b.achieved_rps));
            runs.swap_remove(runs.len() / 2)
        })
        .collect();
    let axum = rows
        .iter()
        .find(|r| r.system == System::BareAxum.name())
        .map(|r| r.achieved_rps);
    for row in &mut rows {
        row.ratio_to_baseline = axum.map(|a| row.achieved_rps / a);
    }
    Ok(rows)
}

/// A route with bounded capacity (8 workers x 10 ms = 800 requests/s) under 0.5x to 4x of its
/// measured capacity: bare axum (queues without bound), tower's limiter, Palisade's limiter.
async fn overload(timing: Timing) -> Result<Vec<Row>, String> {
    let args: Vec<String> = ["--workers", "8", "--work-ms", "10", "--max-in-flight", "12"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let capacity = {
        let server = ServerProcess::start(System::BareAxum, &args)?;
        let report = load::run(spec(server.addr, Mode::ClosedLoop, 32, "/work", timing)).await?;
        report.goodput_rps()
    };
    eprintln!("measured capacity of /work: {capacity:.0} responses/s");
    let mut rows = Vec::new();
    for system in [
        System::BareAxum,
        System::TowerLimit,
        System::PalisadeLimiter,
    ] {
        for factor in [0.5, 1.0, 2.0, 4.0] {
            // A fresh server per point: what one point left queued must not weigh on the next.
            let server = ServerProcess::start(system, &args)?;
            let rate = capacity * factor;
            let report = load::run(spec(
                server.addr,
                Mode::OpenLoop { rate },
                256,
                "/work",
                timing,
            ))
            .await?;
            let mut row = Row::from_report(system.name(), Some(rate), &report).remove(0);
            row.ratio_to_baseline = Some(row.goodput_rps / capacity);
            eprintln!(
                "{:<32} {factor}x: goodput {:>6.0}/s p99 {:>8.2} ms rejected {}",
                system.name(),
                row.goodput_rps,
                row.p99_ms,
                row.rejected
            );
            rows.push(row);
        }
    }
    Ok(rows)
}
