//! `cargo xtask <command>`: the project's chores, in Rust so they run wherever cargo does.
//!
//! - `cargo xtask ci`: everything CI checks, in order: system tools the tests need (installed with
//!   `apt-get` when running as root), `cargo fmt --check`, clippy with `-D warnings`, every
//!   package's tests on its own, every package built without default features, the doctests,
//!   rustdoc with `-D warnings`, the `loom` model-checking tests, and `cargo deny`.
//! - `cargo xtask bench <scenario> [--quick] [--rounds N]`: a load scenario, comparing systems in
//!   one run.
//! - `cargo xtask fuzz [SECONDS]`: every cargo-fuzz target for a bounded time (nightly).

mod bench;
mod ci;
mod cmd;
mod fuzz;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci [--no-deny]                           the whole test suite: system tools, fmt, clippy, tests, loom, cargo-deny
  bench <scenario> [--quick] [--rounds N]  a load scenario (baseline, overload, ...): table, target/bench/<scenario>.json and .svg
  fuzz [SECONDS]                           every cargo-fuzz target for SECONDS each (default 60; needs nightly)
  help                                     this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("fuzz") => fuzz::main(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
