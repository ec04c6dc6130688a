//! `cargo xtask bench <scenario> [--quick]`: builds the load harness and the servers under test in
//! release mode and runs the scenario. Output: a markdown table on stdout, and
//! `target/bench/<scenario>.json` and `.svg`.

use std::process::Command;

use crate::cmd::{cargo, run, workspace_root};

pub const SCENARIOS: &[&str] = &["baseline", "overload"];

pub fn main(args: &[String]) -> Result<(), String> {
    let Some(scenario) = args.first() else {
        return Err(format!("bench: name a scenario: {}", SCENARIOS.join(", ")));
    };
    if !SCENARIOS.contains(&scenario.as_str()) {
        return Err(format!(
            "bench: unknown scenario {scenario:?} (known: {})",
            SCENARIOS.join(", ")
        ));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), Into::into);
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "palisade-bench",
        "--bins",
    ]);
    run(build)?;
    let mut bench = Command::new(target_dir.join("release/palisade-bench"));
    bench
        .current_dir(workspace_root())
        .args(args)
        .arg("--out")
        .arg(target_dir.join("bench"));
    run(bench).map(|_| ())
}
