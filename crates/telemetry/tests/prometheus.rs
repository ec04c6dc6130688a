//! `/metrics` from a real server, checked by a real Prometheus parser (`promtool check metrics`),
//! and label cardinality under hostile paths. The recorder is a local one (not global) on a
//! current-thread runtime, so tests stay independent.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use axum::{Router, routing::get};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use palisade_telemetry::{
    CONTENT_TYPE, PrometheusConfig, TelemetryLayer, metrics::SEMCONV_DURATION_BUCKETS,
};
use palisade_testkit::{Client, TestServer};

fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|| async { "item" }).put(|| async { "put" }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(TelemetryLayer::new())
}

/// Runs `promtool check metrics` on `exposition`.
///
/// # Panics
///
/// When promtool is missing (naming the package to install) or rejects the exposition.
fn promtool_check(exposition: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH: install the Debian/Ubuntu package `prometheus` \
             (`apt-get install prometheus`, which `cargo xtask ci` does on fresh machines); \
             this test needs a real Prometheus parser and must not pass without one"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics exited with {:?}\nstdout: {}\nstderr: {}\nexposition:\n{exposition}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[tokio::test]
async fn the_metrics_endpoint_passes_promtool() {
    let (recorder, metrics) = PrometheusConfig::default().build_recorder().unwrap();
    let _local = metrics::set_default_local_recorder(&recorder);
    let server = TestServer::start(metrics.add_route(app())).await;
    let client = Client::new();
    client.get(&server.url("/items/1")).await;
    client.get(&server.url("/items/2")).await;
    client.get(&server.url("/fail")).await;
    client.get(&server.url("/nope")).await;
    let put = Request::builder()
        .method(Method::PUT)
        .uri(server.url("/items/3"))
        .body(Full::default())
        .unwrap();
    client.send(put).await;
    // A histogram from another crate's naming scheme gets the default seconds buckets.
    metrics::describe_histogram!(
        "palisade_test_wait_seconds",
        metrics::Unit::Seconds,
        "A test histogram."
    );
    metrics::histogram!("palisade_test_wait_seconds").record(0.003);

    let response = client.get(&server.url("/metrics")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(CONTENT_TYPE));
    let exposition = response.text();
    server.shutdown().await;

    promtool_check(&exposition);

    assert!(exposition.contains("# TYPE http_server_request_duration_seconds histogram"));
    assert!(exposition.contains("# HELP http_server_request_duration_seconds "));
    assert!(exposition.contains("# TYPE http_server_active_requests gauge"));
    assert!(exposition.contains(
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200"} 2"#
    ));
    assert!(exposition.contains(
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="unmatched",http_response_status_code="404"} 1"#
    ));
    assert!(exposition.contains(
        r#"http_server_request_duration_seconds_count{http_request_method="PUT",http_route="/items/{id}",http_response_status_code="200"} 1"#
    ));
    assert!(
        exposition.contains(
            r#"http_server_active_requests{http_request_method="GET",url_scheme="http"} 0"#
        )
    );

    // Exactly the semantic-convention buckets (plus +Inf) for the duration histogram.
    let prefix = r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/fail",http_response_status_code="500",le=""#;
    let les: Vec<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    let expected: Vec<String> = SEMCONV_DURATION_BUCKETS
        .iter()
        .map(ToString::to_string)
        .chain(["+Inf".to_owned()])
        .collect();
    assert_eq!(les, expected);
    // Another crate's `_seconds` histogram: buckets, not a summary.
    assert!(exposition.contains("# TYPE palisade_test_wait_seconds histogram"));
    assert!(exposition.contains(r#"palisade_test_wait_seconds_bucket{le="0.0005"} 0"#));
    assert!(exposition.contains(r#"palisade_test_wait_seconds_bucket{le="0.005"} 1"#));
}

/// Series lines (not comments) in an exposition.
fn series(exposition: &str) -> usize {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count()
}

#[tokio::test]
async fn ten_thousand_random_paths_add_no_series() {
    let (recorder, metrics) = PrometheusConfig::default().build_recorder().unwrap();
    let _local = metrics::set_default_local_recorder(&recorder);
    let server = TestServer::start(app()).await;
    let client = Client::new();
    // One of each kind first, so every label set that can exist does.
    client.get(&server.url("/items/1")).await;
    client.get(&server.url("/a-first-unknown-path")).await;
    let before = metrics.render();
    let series_before = series(&before);

    // A scanner: 10 000 distinct paths (and methods the router does not know).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..10_000u32 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let path = format!("/scan/{state:016x}/{i}");
        let response = if i % 100 == 0 {
            let request = Request::builder()
                .method(Method::from_bytes(format!("X{i}").as_bytes()).unwrap())
                .uri(server.url(&path))
                .body(Full::default())
                .unwrap();
            client.send(request).await
        } else {
            client.get(&server.url(&path)).await
        };
        assert_eq!(response.status, 404);
    }
    let after = metrics.render();
    server.shutdown().await;

    // The `_OTHER` method is one new label value, once.
    let other_method = after
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(r#"http_request_method="_OTHER""#))
        .count();
    assert_eq!(
        series(&after) - other_method,
        series_before,
        "random paths created series"
    );
    assert!(!after.contains("/scan/"), "a raw path became a label");
    assert!(after.contains(
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="unmatched",http_response_status_code="404"} 9901"#
    ));
    assert!(after.contains(
        r#"http_server_request_duration_seconds_count{http_request_method="_OTHER",http_route="unmatched",http_response_status_code="404"} 100"#
    ));
}

#[test]
fn nonsense_configuration_is_refused() {
    let err = |config: PrometheusConfig| config.validate().unwrap_err().key().to_owned();
    assert_eq!(
        err(PrometheusConfig {
            path: "metrics".into(),
            ..PrometheusConfig::default()
        }),
        "prometheus.path"
    );
    assert_eq!(
        err(PrometheusConfig {
            duration_buckets: vec![0.1, 0.05],
            ..PrometheusConfig::default()
        }),
        "prometheus.duration_buckets"
    );
    assert_eq!(
        err(PrometheusConfig {
            seconds_buckets: vec![],
            ..PrometheusConfig::default()
        }),
        "prometheus.seconds_buckets"
    );
    assert_eq!(
        err(PrometheusConfig {
            duration_buckets: vec![f64::NAN],
            ..PrometheusConfig::default()
        }),
        "prometheus.duration_buckets"
    );
    assert_eq!(
        err(PrometheusConfig {
            upkeep_interval: std::time::Duration::ZERO,
            ..PrometheusConfig::default()
        }),
        "prometheus.upkeep_interval"
    );
}
