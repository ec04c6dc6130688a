//! The real binary, as the README runs it: it listens where `PALISADE_ADDR` says, answers, and
//! exits cleanly (status 0) on SIGTERM after finishing the request in flight.

use std::{process::Stdio, time::Duration};

use palisade_testkit::Client;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

/// The running binary, its base URL, and its log lines after the address line.
async fn start_binary() -> (Child, String, mpsc::UnboundedReceiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_production_server"))
        .env("PALISADE_ADDR", "127.0.0.1:0")
        .env("PALISADE_SERVER__DRAIN__PROPAGATION_DELAY", "2")
        // tower-http logs the start of each request at debug: the test waits for it.
        .env("RUST_LOG", "warn,palisade_request_id=info,tower_http=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn production_server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(url) = line.strip_prefix("listening on ") {
                return url.to_owned();
            }
        }
        panic!("the server exited before it printed its address");
    })
    .await
    .expect("the server printed its address in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, base, rx)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("child still running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(status.expect("run kill").success());
}

#[tokio::test]
async fn answers_and_exits_cleanly_on_sigterm() {
    let (mut child, base, mut logs) = start_binary().await;
    let client = Client::new();
    let hello = client.get(&format!("{base}/")).await;
    assert_eq!(hello.status, 200);
    assert!(hello.text().starts_with("Palisade production server"));

    // A request in flight when SIGTERM arrives still gets its answer.
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/api/slow?ms=300");
        async move { client.get(&url).await }
    });
    // Wait until the server has started on it: from then on it is in flight.
    let started = async {
        while let Some(line) = logs.recv().await {
            if line.contains("started processing request") && line.contains("/api/slow") {
                return line;
            }
        }
        panic!("the server's log ended");
    };
    let line = tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("request reached the server");
    assert!(
        line.contains("request_id="),
        "log lines carry the request id: {line}"
    );
    assert_eq!(
        client.get(&format!("{base}/health/ready")).await.status,
        200
    );
    sigterm(&child);
    assert_eq!(slow.await.expect("slow request task").status, 200);
    // During the propagation delay readiness fails while requests are still served. (A fresh
    // client: the drain closes keep-alive connections.)
    let probe = Client::new().get(&format!("{base}/health/ready")).await;
    assert_eq!(probe.status, 503, "readiness fails first: {}", probe.text());
    assert_eq!(Client::new().get(&format!("{base}/")).await.status, 200);

    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited within 10 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_bad_address_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_production_server"))
        .env("PALISADE_ADDR", "not-an-address")
        .output()
        .await
        .expect("run production_server");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PALISADE_ADDR"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_production_server"))
        .env("PALISADE_CONCURRENCY__LOW_WATER", "0.9")
        .output()
        .await
        .expect("run production_server");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("concurrency.low_water"), "{stderr}");
}
