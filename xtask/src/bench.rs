//! `cargo xtask bench <scenario> [--quick] [--rounds N] [--duration 24h]`: builds the load harness and the servers under test in
//! release mode and runs the scenario. Output: a markdown table on stdout, and
//! `target/bench/<scenario>.json` and `.svg`.

use std::{ffi::OsStr, process::Command};

use crate::cmd::{cargo, run, workspace_root};

/// Builds the harness and hands the arguments to it: it knows its scenarios (one registry in
/// `bench/src/scenarios/mod.rs`) and names them when asked for an unknown one.
pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), Into::into);
    build_release(&["-p", "palisade-bench", "--bins"])?;
    let mut bench = Command::new(target_dir.join("release/palisade-bench"));
    if args.first().is_some_and(|scenario| scenario == "baseline") {
        // The peer stack: its crates (axum-prometheus, axum-tracing-opentelemetry) live in a
        // package of their own, outside the workspace, so ordinary builds never compile them.
        let peers = target_dir.join("peers");
        let manifest = workspace_root().join("bench/peers-telemetry/Cargo.toml");
        build_release(&[
            "--manifest-path".as_ref(),
            manifest.as_os_str(),
            "--target-dir".as_ref(),
            peers.as_os_str(),
            "--bin".as_ref(),
            "peer-stack-server".as_ref(),
        ])?;
        bench.env(
            "PALISADE_BENCH_PEER_STACK",
            peers.join("release/peer-stack-server"),
        );
    }
    if args.first().is_some_and(|scenario| scenario == "soak") {
        // The soak drives the example server exactly as it ships: its own binary.
        build_release(&["-p", "production_server", "--bin", "production_server"])?;
        bench.env(
            "PALISADE_BENCH_EXAMPLE",
            target_dir.join("release/production_server"),
        );
    }
    bench
        .current_dir(workspace_root())
        .args(args)
        .arg("--out")
        .arg(target_dir.join("bench"));
    run(bench).map(|_| ())
}

/// `cargo build --release --locked` with `args`.
fn build_release<A: AsRef<OsStr>>(args: &[A]) -> Result<(), String> {
    let mut build = cargo();
    build.args(["build", "--release", "--locked"]).args(args);
    run(build).map(|_| ())
}
