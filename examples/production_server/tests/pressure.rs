//! The real binary at its file descriptor limit (`prlimit --nofile=256`): once the descriptor
//! monitor reads 95 % it refuses new work with 503, readiness fails naming the resource while
//! liveness and the operations port keep answering, and it recovers by itself when the
//! connections close, without wedging in `accept`.

use std::time::Duration;

use palisade_testkit::Client;
use support::{sigterm, start_binary_with_nofile, start_binary_with_ops_and};
use tokio::net::TcpStream;

mod support;

const NOFILE: u32 = 256;

/// The server's descriptor ratio, as its monitor last read it.
async fn fd_ratio(client: &Client, ops: &str) -> f64 {
    let metrics = client.get(&format!("{ops}/metrics")).await.text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("palisade_overload_resource_ratio{resource=\"fds\"} "))
        .expect("the fds ratio is exported")
        .parse()
        .unwrap()
}

/// Polls `check` every 50 ms for up to 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_descriptor_limit_it_refuses_new_work_keeps_its_probes_and_recovers() {
    let (child, base, ops, _logs) = start_binary_with_nofile(NOFILE).await;
    let client = Client::new();
    let ops_addr = ops.trim_start_matches("http://").to_owned();
    eventually("the operations port", async || {
        TcpStream::connect(&ops_addr).await.is_ok()
    })
    .await;
    eventually("a first descriptor reading", async || {
        fd_ratio(&client, &ops).await > 0.0
    })
    .await;
    // Idle connections up to 96 % of the limit, counted from what the server holds already.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let open = (fd_ratio(&client, &ops).await * f64::from(NOFILE)).round() as u32;
    let target = f64::from(NOFILE) * 0.96;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let needed = (target as u32).saturating_sub(open);
    let addr = base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..needed {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
    }

    let fresh = || Client::new();
    eventually("readiness failing", async || {
        fresh().get(&format!("{ops}/health/ready")).await.status == 503
    })
    .await;
    let ready = fresh().get(&format!("{ops}/health/ready")).await;
    assert!(
        ready.text().contains("fds"),
        "names the resource: {}",
        ready.text()
    );
    let refused = fresh().get(&format!("{base}/api/items")).await;
    assert_eq!(
        refused.status,
        503,
        "new work is refused: {}",
        refused.text()
    );
    assert!(refused.text().contains("load_shed"), "{}", refused.text());
    assert_eq!(
        refused.headers.get("connection"),
        Some(&http::HeaderValue::from_static("close")),
        "keep-alive refused under pressure"
    );
    assert_eq!(
        fresh().get(&format!("{ops}/health/live")).await.status,
        200,
        "liveness is not resource pressure"
    );

    drop(held);
    eventually("recovery", async || {
        fresh().get(&format!("{base}/api/items")).await.status == 200
    })
    .await;
    assert_eq!(
        fresh().get(&format!("{ops}/health/ready")).await.status,
        200
    );
    sigterm(&child);
}

/// Sends `GET path` with `priority` on a fresh connection: the status.
async fn status_of(base: &str, path: &str, priority: &str) -> u16 {
    Client::new()
        .get_with_header(&format!("{base}{path}"), "x-priority", priority)
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_its_memory_budget_it_sheds_low_priority_first_then_refuses_and_recovers() {
    // A 192 MiB RSS budget (the monitor's measure where the container has no limit, and a budget
    // inside one where it has), and reports that hold 16 MiB each for 4 s.
    let budget = (192u64 << 20).to_string();
    let (child, base, ops, _logs) =
        start_binary_with_ops_and(&[("PALISADE_OVERLOAD__MEMORY__MAX_RSS", &budget)]).await;
    let ops_addr = ops.trim_start_matches("http://").to_owned();
    eventually("the operations port", async || {
        TcpStream::connect(&ops_addr).await.is_ok()
    })
    .await;
    assert_eq!(status_of(&base, "/api/items", "sheddable").await, 200);

    // Reports are added one at a time until the monitor sheds the lowest class...
    let mut reports = Vec::new();
    let hold = || {
        let url = format!("{base}/api/report?mb=16&ms=4000");
        tokio::spawn(async move { Client::new().get(&url).await.status.as_u16() })
    };
    let mut shedding = false;
    for _ in 0..20 {
        reports.push(hold());
        tokio::time::sleep(Duration::from_millis(300)).await;
        if status_of(&base, "/api/items", "sheddable").await == 503 {
            shedding = true;
            break;
        }
    }
    assert!(shedding, "the lowest class is shed as memory passes 80 %");
    assert_eq!(
        status_of(&base, "/api/items", "critical").await,
        200,
        "while the default class is still served"
    );
    // ...then until it refuses everything but CriticalPlus and readiness fails.
    let mut refusing = false;
    for _ in 0..20 {
        reports.push(hold());
        tokio::time::sleep(Duration::from_millis(300)).await;
        if status_of(&base, "/api/items", "critical").await == 503 {
            refusing = true;
            break;
        }
    }
    assert!(refusing, "new work is refused from 95 %");
    let ready = Client::new().get(&format!("{ops}/health/ready")).await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("memory"), "{}", ready.text());
    assert_eq!(
        Client::new()
            .get(&format!("{ops}/health/live"))
            .await
            .status,
        200
    );
    let ratio = Client::new().get(&format!("{ops}/metrics")).await.text();
    let ratio: f64 = ratio
        .lines()
        .find_map(|l| l.strip_prefix("palisade_overload_resource_ratio{resource=\"memory\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ratio < 1.1, "shedding held it near the budget: {ratio}");

    // The reports finish (a last one sent as the level turned may have been refused at once),
    // their memory goes back, and the server recovers by itself.
    let mut completed = 0;
    for report in reports {
        match report.await.unwrap() {
            200 => completed += 1,
            503 => {}
            other => panic!("a report ended with {other}"),
        }
    }
    assert!(completed >= 6, "admitted reports complete: {completed}");
    eventually("recovery", async || {
        status_of(&base, "/api/items", "sheddable").await == 200
    })
    .await;
    sigterm(&child);
}
