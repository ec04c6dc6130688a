//! Instructions per request of each stack, counted by callgrind (repeatable on a noisy machine,
//! unlike wall-clock time).
//!
//! `cargo run --release --manifest-path bench/peers-telemetry/Cargo.toml --bin instructions`
//!
//! For each stack and sampler it runs this program under `valgrind --tool=callgrind` twice, with
//! 1 000 and 11 000 requests, and reports (Ir(11 000) - Ir(1 000)) / 10 000: the setup cancels
//! out. Inside valgrind (`INSTRUCTIONS_CHILD` set) it only runs the requests. `ONLY=palisade`
//! limits the run to the stacks whose name contains the text.

use std::process::Command;

use palisade_telemetry::TraceSampler;
use peers_telemetry::{Stack, drive, install_recorder, subscriber};

fn child(stack: &str, sampler: &str, traceparent: bool, iters: u64) {
    let stack = Stack::ALL
        .into_iter()
        .find(|s| s.name() == stack)
        .expect("known stack");
    let sampler = match sampler {
        "sampled" => TraceSampler::AlwaysOn,
        _ => TraceSampler::AlwaysOff,
    };
    let metrics = install_recorder();
    let (guard, dispatch) = subscriber(sampler);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        rt.block_on(drive(stack.router(), iters, traceparent));
    });
    metrics.handle().run_upkeep();
    drop(guard);
}

fn instructions(stack: Stack, sampler: &str, traceparent: bool, iters: u64) -> u64 {
    let exe = std::env::current_exe().expect("own path");
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/tmp/tel-callgrind.%p",
        ])
        .arg(exe)
        .env("INSTRUCTIONS_CHILD", "1")
        .env("STACK", stack.name())
        .env("SAMPLER", sampler)
        .env("TRACEPARENT", if traceparent { "1" } else { "0" })
        .env("ITERS", iters.to_string())
        .output()
        .expect("valgrind is installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let collected = stderr
        .lines()
        .find_map(|l| l.split("Collected : ").nth(1))
        .unwrap_or_else(|| panic!("no callgrind total in:\n{stderr}"));
    collected.trim().parse().expect("a count")
}

fn main() {
    if std::env::var_os("INSTRUCTIONS_CHILD").is_some() {
        let var = |k: &str| std::env::var(k).expect(k);
        child(
            &var("STACK"),
            &var("SAMPLER"),
            var("TRACEPARENT") == "1",
            var("ITERS").parse().expect("ITERS"),
        );
        return;
    }
    let cases: Vec<(&str, bool, Vec<Stack>)> = vec![
        (
            "sampled",
            false,
            vec![
                Stack::Bare,
                Stack::PalisadeTracing,
                Stack::AxumTracingOpentelemetry,
                Stack::TowerOtel,
            ],
        ),
        (
            "sampled",
            true,
            vec![
                Stack::PalisadeTracing,
                Stack::AxumTracingOpentelemetry,
                Stack::TowerOtel,
            ],
        ),
        (
            "unsampled",
            false,
            vec![
                Stack::PalisadeTracing,
                Stack::AxumTracingOpentelemetry,
                Stack::TowerOtel,
            ],
        ),
        (
            "unsampled",
            false,
            vec![Stack::PalisadeMetrics, Stack::AxumPrometheus],
        ),
    ];
    println!("| stack | sampler | incoming traceparent | instructions per request |");
    println!("|---|---|---|---|");
    // ONLY=<substring>: measure only the stacks whose name contains it.
    let only = std::env::var("ONLY").unwrap_or_default();
    for (sampler, traceparent, stacks) in cases {
        for stack in stacks.into_iter().filter(|s| s.name().contains(&only)) {
            let small = instructions(stack, sampler, traceparent, 1_000);
            let large = instructions(stack, sampler, traceparent, 11_000);
            let per_request = large.saturating_sub(small) / 10_000;
            let sampler = if stack.traces() { sampler } else { "-" };
            println!(
                "| {} | {sampler} | {} | {per_request} |",
                stack.name(),
                if traceparent { "yes" } else { "no" }
            );
        }
    }
}
