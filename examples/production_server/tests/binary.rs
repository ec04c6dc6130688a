//! The real binary, as the README runs it: it listens where `PALISADE_ADDR` says, answers, and
//! exits cleanly (status 0) on SIGTERM after finishing the request in flight.

use std::time::Duration;

use futures_util::StreamExt;
use palisade_testkit::Client;
use support::{sigterm, start_binary};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

mod support;

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
    let ws_url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("WebSocket handshake");
    sigterm(&child);
    assert_eq!(slow.await.expect("slow request task").status, 200);
    // WebSocket clients are told to go away (1001) when the drain starts, not cut at its end.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("a close frame within 5 s of SIGTERM");
    assert_eq!(closed, Some(1001));
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
