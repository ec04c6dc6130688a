//! Shared by the tests that run the real binary.

#![allow(dead_code)] // each test binary uses part of it

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

/// The operations listener on a port the system picks when the binary binds it (a port found
/// free beforehand could be taken by another test in between); its address is read from the
/// binary's log line.
const OPS_ANY_PORT: &str = "127.0.0.1:0";

/// The running binary, its base URL, and its log lines after the ones naming its addresses.
pub(crate) async fn start_binary() -> (Child, String, mpsc::UnboundedReceiver<String>) {
    let (child, base, _ops, logs) = start_binary_with_ops().await;
    (child, base, logs)
}

/// The running binary with an operations listener, its base URL, the operations base URL and
/// its log lines.
pub(crate) async fn start_binary_with_ops()
-> (Child, String, String, mpsc::UnboundedReceiver<String>) {
    start_binary_with_ops_and(&[]).await
}

/// The running binary with an operations listener and `env`: its base URL, the operations base
/// URL and its log lines.
pub(crate) async fn start_binary_with_ops_and(
    env: &[(&str, &str)],
) -> (Child, String, String, mpsc::UnboundedReceiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_production_server"));
    command.envs(env.iter().copied());
    spawn(command).await
}

/// The running binary with an operations listener and `env`, started inside the memory cgroup
/// `dir` (it joins before `exec`, so the memory monitor finds the cgroup when the stack is built):
/// its base URL, the operations base URL and its log lines.
pub(crate) async fn start_binary_in_cgroup(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Child, String, String, mpsc::UnboundedReceiver<String>) {
    let mut command = Command::new("sh");
    command
        .args(["-c", "echo $$ > \"$1/cgroup.procs\" && exec \"$2\"", "sh"])
        .arg(dir)
        .arg(env!("CARGO_BIN_EXE_production_server"))
        .envs(env.iter().copied());
    spawn(command).await
}

/// The running binary with an operations listener, limited to `nofile` open descriptors
/// (`prlimit`, util-linux): its base URL, the operations base URL and its log lines.
pub(crate) async fn start_binary_with_nofile(
    nofile: u32,
) -> (Child, String, String, mpsc::UnboundedReceiver<String>) {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg(env!("CARGO_BIN_EXE_production_server"));
    spawn(command).await
}

/// Starts `command` (the binary, with an operations listener): the child, its base URL, the
/// operations base URL and its log lines after the ones naming its addresses.
async fn spawn(mut command: Command) -> (Child, String, String, mpsc::UnboundedReceiver<String>) {
    let mut child = command
        .env("PALISADE_ADDR", "127.0.0.1:0")
        .env("PALISADE_OPS_ADDR", OPS_ANY_PORT)
        // Long enough for a test to probe and send a request while the drain propagates, on a
        // busy machine.
        .env("PALISADE_SERVER__DRAIN__PROPAGATION_DELAY", "4")
        // The runtime-lag monitor would read a busy test machine's scheduling delays as overload
        // (100 ms of lag is critical) and refuse requests no test here expects refused; no test
        // of the binary is about lag, which the overload-monitor crate tests on a paused clock.
        .env("PALISADE_OVERLOAD__LAG__ENABLED", "false")
        // tower-http logs the start of each request at debug: the test waits for it; the
        // server span (palisade_telemetry, info) puts the request id on it. `palisade::serve`
        // says where the operations listener is.
        .env(
            "RUST_LOG",
            "warn,palisade_telemetry=info,tower_http=debug,palisade::serve=info",
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn production_server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (base, ops) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut base = None;
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(url) = line.strip_prefix("listening on ") {
                base = Some(url.to_owned());
            } else if line.contains("serving operations")
                && let Some(addr) = loopback_address(&line)
            {
                let base = base.expect("the public address is printed first");
                return (base, format!("http://{addr}"));
            }
        }
        panic!("the server exited before it printed its addresses");
    })
    .await
    .expect("the server printed its addresses in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, base, ops, rx)
}

/// The first `127.0.0.1:<port>` in `line`.
fn loopback_address(line: &str) -> Option<String> {
    let (_, after) = line.split_once("127.0.0.1:")?;
    let port: String = after.chars().take_while(char::is_ascii_digit).collect();
    (!port.is_empty()).then(|| format!("127.0.0.1:{port}"))
}

pub(crate) fn sigterm(child: &Child) {
    let pid = child.id().expect("child still running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(status.expect("run kill").success());
}
