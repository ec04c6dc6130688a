//! `cargo xtask ci`: the README's test command and the whole of CI.

use std::{path::Path, process::Command, time::Duration};

use crate::cmd::{cargo, is_root, on_path, run, workspace_root};

/// System programs the tests call, with the Debian package that provides each and why.
const SYSTEM_TOOLS: &[(&str, &str, &str)] = &[
    // (program, Debian package, which tests need it)
    ("kill", "procps", "the example server's SIGTERM test"),
    (
        "prlimit",
        "util-linux",
        "the example server's file descriptor pressure test",
    ),
    (
        "promtool",
        "prometheus",
        "the /metrics exposition and alert-rule checks",
    ),
    (
        "redis-server",
        "redis-server",
        "the shared rate-limit tests (a real Redis on a free loopback port)",
    ),
];

/// cargo-deny, pinned: installing it builds it from source (about 3.5 minutes on 2 cores).
const CARGO_DENY_VERSION: &str = "0.20.2";

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let mut deny = true;
    for arg in args {
        match arg.as_str() {
            "--no-deny" => deny = false,
            other => return Err(format!("ci: unknown option {other:?} (known: --no-deny)")),
        }
    }
    let mut timings: Vec<(&str, Duration)> = Vec::new();

    ensure_system_tools()?;

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    timings.push(("fmt", run(fmt)?));

    // `--all-features` everywhere: the `serde` configuration code is compiled, linted and tested,
    // and every step shares one feature set (no rebuilds between steps).
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    timings.push(("clippy", run(clippy)?));

    // Every package on its own: `cargo test -p` resolves only that package's features, so a
    // crate that builds only because a sibling turns on a dependency feature fails here, as it
    // would for a user who picks that one crate. One target directory for all: the packages
    // share most of their dependency builds.
    let packages = workspace_packages()?;
    let mut tests = Duration::ZERO;
    for package in &packages {
        let mut test = cargo();
        test.args([
            "test",
            "--locked",
            "-p",
            package,
            "--all-targets",
            "--all-features",
        ]);
        tests += run(test)?;
    }
    timings.push(("tests", tests));

    let mut bare = Duration::ZERO;
    for package in &packages {
        let mut check = cargo();
        check.args(["check", "--locked", "-p", package, "--no-default-features"]);
        bare += run(check)?;
    }
    timings.push(("no-default", bare));

    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc", "--all-features", "--locked"]);
    timings.push(("doctests", run(doc)?));

    let mut docs = cargo();
    docs.args([
        "doc",
        "--workspace",
        "--no-deps",
        "--all-features",
        "--locked",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    timings.push(("rustdoc", run(docs)?));

    for package in loom_packages()? {
        // A separate target directory: `--cfg palisade_loom` changes every fingerprint, and sharing the
        // main one would rebuild the workspace twice per run.
        let mut loom = cargo();
        // The models live beside the state they check (`src/loom_tests.rs`, private), so only the
        // library's tests under `loom_tests` run: the other unit tests need the real clock.
        loom.args([
            "test",
            "--release",
            "--locked",
            "-p",
            &package,
            "--lib",
            "--",
            "loom_tests",
        ])
        .env("RUSTFLAGS", "--cfg palisade_loom")
        .env("CARGO_TARGET_DIR", workspace_root().join("target/loom"))
        .env("LOOM_MAX_PREEMPTIONS", "3");
        timings.push(("loom", run(loom)?));
    }

    if deny {
        ensure_cargo_deny()?;
        let mut check = cargo();
        check.args(["deny", "--locked", "check", "bans", "licenses", "sources"]);
        timings.push(("cargo-deny", run(check)?));
    }

    println!("\nci: all checks passed");
    for (step, took) in timings {
        println!("  {step:<11} {:>6.1} s", took.as_secs_f64());
    }
    Ok(())
}

/// Installs missing system tools with `apt-get` when root; otherwise names the packages.
fn ensure_system_tools() -> Result<(), String> {
    let missing: Vec<_> = SYSTEM_TOOLS
        .iter()
        .filter(|(program, ..)| !on_path(program))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(_, package, _)| *package).collect();
    for (program, package, why) in &missing {
        println!("ci: {program} (Debian package {package}) is missing; needed by {why}");
    }
    if !is_root() {
        return Err(format!(
            "install the missing packages first: sudo apt-get install -y {}",
            packages.join(" ")
        ));
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run(install)?;
    match missing.iter().find(|(program, ..)| !on_path(program)) {
        Some((program, package, _)) => Err(format!(
            "{program} still missing after installing {package}"
        )),
        None => Ok(()),
    }
}

/// Every package of the workspace, by name: the crates, the bench harness, the examples and
/// this tool.
fn workspace_packages() -> Result<Vec<String>, String> {
    let root = workspace_root();
    let mut dirs = vec![root.join("bench"), root.join("xtask")];
    for parent in ["crates", "examples"] {
        let parent = root.join(parent);
        let entries =
            std::fs::read_dir(&parent).map_err(|e| format!("read {}: {e}", parent.display()))?;
        dirs.extend(entries.flatten().map(|entry| entry.path()));
    }
    let mut packages = Vec::new();
    for dir in dirs {
        if dir.join("Cargo.toml").is_file() {
            packages.push(package_name(&dir)?);
        }
    }
    packages.sort();
    Ok(packages)
}

/// The packages that have a `src/loom_tests.rs` model-checking suite.
fn loom_packages() -> Result<Vec<String>, String> {
    let crates = workspace_root().join("crates");
    let entries =
        std::fs::read_dir(&crates).map_err(|e| format!("read {}: {e}", crates.display()))?;
    let mut packages = Vec::new();
    for entry in entries.flatten() {
        if entry.path().join("src/loom_tests.rs").is_file() {
            packages.push(package_name(&entry.path())?);
        }
    }
    packages.sort();
    Ok(packages)
}

fn package_name(dir: &Path) -> Result<String, String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("read {}: {e}", manifest.display()))?;
    text.lines()
        .find_map(|line| {
            let value = line
                .strip_prefix("name")?
                .trim_start()
                .strip_prefix('=')?
                .trim();
            Some(value.trim_matches('"').to_owned())
        })
        .ok_or_else(|| format!("no package name in {}", manifest.display()))
}

fn ensure_cargo_deny() -> Result<(), String> {
    let installed = cargo()
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    println!("ci: installing cargo-deny {CARGO_DENY_VERSION} (builds from source, a few minutes)");
    let mut install = cargo();
    install.args([
        "install",
        "--locked",
        "cargo-deny",
        "--version",
        CARGO_DENY_VERSION,
    ]);
    run(install).map(|_| ())
}
