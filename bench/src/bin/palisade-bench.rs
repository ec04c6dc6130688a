//! `palisade-bench <scenario> [--quick] [--rounds N] [--duration 24h] [--out DIR]`: the load
//! scenarios behind `cargo xtask bench`. Each scenario compares several systems in the same run
//! and writes a markdown table (stdout), `<out>/<scenario>.json` and `<out>/<scenario>.svg`.
//! `--rounds` sets how many rounds a scenario that alternates systems runs before keeping each
//! one's median (3 by default): more, for a steadier median on a noisy machine.

use std::{path::PathBuf, process::ExitCode};

use palisade_bench::{
    process::{cores, pin_generator},
    report,
    scenario::{Timing, parse_length},
    scenarios,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("palisade-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    let names: Vec<_> = scenarios::all().iter().map(|s| s.name()).collect();
    format!(
        "usage: palisade-bench <{}> [--quick] [--rounds N] [--duration LENGTH] [--out DIR]",
        names.join("|")
    )
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or_else(usage)?;
    let scenario =
        scenarios::find(&name).ok_or_else(|| format!("unknown scenario {name:?}\n{}", usage()))?;
    let (mut timing, mut out) = (Timing::FULL, PathBuf::from("target/bench"));
    let mut rounds = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                timing = Timing {
                    length: timing.length,
                    ..Timing::QUICK
                }
            }
            "--duration" => {
                let text = args
                    .next()
                    .ok_or("--duration needs a length, such as 24h")?;
                timing.length = Some(parse_length(&text)?);
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .map(Some)
                    .ok_or("--rounds needs a number of rounds above zero")?;
            }
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            other => return Err(format!("unknown option {other:?}\n{}", usage())),
        }
    }
    // Whatever the order of the options: `--quick` sets its own timing, `--rounds` overrides it.
    timing.rounds = rounds.unwrap_or(timing.rounds);
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
    // The generator runs on one thread: it is pinned to one core anyway, and a single thread keeps
    // its bookkeeping uncontended.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let rows = runtime.block_on(scenario.run(timing))?;
    println!("\n{}", report::markdown(&rows));
    let json = out.join(format!("{name}.json"));
    let svg = out.join(format!("{name}.svg"));
    report::write_json(&json, &rows)?;
    report::write_svg(&svg, scenario.title(), &rows)?;
    println!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}
