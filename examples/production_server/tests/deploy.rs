//! The deploy kit agrees with the code: the alert rules pass `promtool check rules`, and every
//! metric the Grafana dashboard queries is one the example server really exports (checked
//! against a live `/metrics` of the real binary, which must also pass `promtool check metrics`).

use std::{collections::BTreeSet, io::Write, process::Stdio};

use futures_util::StreamExt;
use palisade_testkit::Client;
use support::{sigterm, start_binary_with_ops};

mod support;

const ALERTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/prometheus/alerts.yaml"
);
const DASHBOARD: &str = include_str!("../../../deploy/grafana/palisade.json");

/// Runs promtool with `args`, feeding `stdin`; fails clearly when promtool is missing.
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "promtool is needed ({err}); install Debian's `prometheus` package \
                 (`cargo xtask ci` does)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_alert_rules_pass_promtool() {
    let (ok, output) = promtool(&["check", "rules", ALERTS], "");
    assert!(ok, "{output}");
    assert!(output.contains("SUCCESS"), "{output}");
}

/// Metric names in `PromQL` expressions: identifiers that start like Palisade's or the HTTP
/// semantic conventions' metrics.
fn queried_metrics(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut exprs = Vec::new();
    collect_exprs(dashboard, &mut exprs);
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut token = String::new();
        for c in expr.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                token.push(c);
            } else {
                if token.starts_with("palisade_") || token.starts_with("http_server_") {
                    names.insert(std::mem::take(&mut token));
                }
                token.clear();
            }
        }
    }
    names
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Series names in a Prometheus text exposition.
fn exported_metrics(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_dashboard_queries_only_metrics_the_example_exports() {
    let (child, base, ops, _logs) = start_binary_with_ops().await;
    let client = Client::new();
    // Traffic that makes every kind of series appear: success, not found, a breaker rejection.
    for path in ["/", "/api/items", "/api/items/99", "/nowhere", "/api/flaky"] {
        client.get(&format!("{base}{path}")).await;
    }
    assert_eq!(
        client
            .post(&format!("{ops}/admin/breaker/open"))
            .await
            .status,
        200
    );
    let rejected = client.get(&format!("{base}/api/flaky")).await;
    assert_eq!(rejected.status, 503);
    client.get(&format!("{base}/health/ready")).await;
    // A WebSocket client on the hub receives the status updates.
    let ws_url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("WebSocket handshake through the whole stack and palisade::serve");
    let update = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("an update within a second or two")
        .expect("the stream is open")
        .expect("a message");
    let update: serde_json::Value =
        serde_json::from_str(update.to_text().expect("text")).expect("JSON");
    assert_eq!(update["type"], "status");

    // The operators' routes and the scrape are on the operations port, not the public one.
    assert_eq!(client.get(&format!("{base}/metrics")).await.status, 404);
    assert_eq!(
        client
            .post(&format!("{base}/admin/breaker/close"))
            .await
            .status,
        404
    );
    let exposition = client.get(&format!("{ops}/metrics")).await.text();
    let (ok, output) = promtool(&["check", "metrics"], &exposition);
    assert!(ok, "promtool check metrics: {output}");

    let exported = exported_metrics(&exposition);
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let queried = queried_metrics(&dashboard);
    assert!(queried.len() >= 15, "the dashboard queries {queried:?}");
    let missing: Vec<_> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the example does not export: {missing:?}"
    );
    // The breaker's rejection went through the telemetry layer (outside the route layers),
    // labelled with its route template.
    assert!(
        exposition.lines().any(|line| line
            .starts_with("http_server_request_duration_seconds_count")
            && line.contains("http_route=\"/api/flaky\"")
            && line.contains("http_response_status_code=\"503\"")),
        "{exposition}"
    );
    sigterm(&child);
}
