//! `cargo xtask fuzz [SECONDS]`: runs every cargo-fuzz target of the workspace for a bounded time
//! (default 60 s each). Needs a nightly toolchain (cargo-fuzz instruments with `-Z` flags);
//! installs cargo-fuzz when it is missing. Not part of CI, which stays on stable: the property
//! tests there cover the same checkers.

use std::process::Command;

use crate::cmd::{run, workspace_root};

/// The fuzz packages and their targets, relative to the workspace root.
const TARGETS: &[(&str, &str)] = &[("crates/request-guard", "check")];

/// cargo-fuzz, pinned: installed from source when missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let seconds: u64 = match args {
        [] => 60,
        [seconds] => seconds
            .parse()
            .map_err(|_| format!("fuzz: {seconds:?} is not a number of seconds"))?,
        _ => return Err("usage: cargo xtask fuzz [SECONDS]".into()),
    };
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        return Err(
            "fuzz: needs a nightly toolchain (`rustup toolchain install nightly`); the property \
             tests in `cargo xtask ci` cover the same checkers on stable"
                .into(),
        );
    }
    let installed = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let mut install = Command::new("cargo");
        install.args([
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ]);
        run(install)?;
    }
    for (dir, target) in TARGETS {
        let mut fuzz = Command::new("cargo");
        fuzz.current_dir(workspace_root().join(dir)).args([
            "+nightly",
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
        ]);
        run(fuzz)?;
    }
    Ok(())
}
