//! Log lines inside a request carry its id; invalid ids never reach the logs.

mod common;

use axum::{Router, routing::get};
use common::{app, capture_logs, is_uuid};
use http_body_util::Full;
use palisade_request_id::{RequestIdLayer, SpanLevel};
use palisade_testkit::{Client, TestServer};
use tower_http::trace::TraceLayer;

async fn fetch(server: &TestServer, id: Option<&str>) -> palisade_testkit::TestResponse {
    let mut request = http::Request::get(server.url("/"));
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    Client::new()
        .send(request.body(Full::default()).unwrap())
        .await
}

fn lines_with<'a>(logs: &'a str, needle: &str) -> Vec<&'a str> {
    logs.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test]
async fn handler_log_lines_carry_the_id() {
    let (logs, _guard) = capture_logs();
    let server = TestServer::start(app(RequestIdLayer::new())).await;

    let generated = fetch(&server, None).await;
    let generated = generated.header("x-request-id").unwrap().to_owned();
    let kept = fetch(&server, Some("kept-id-1")).await;
    assert_eq!(kept.header("x-request-id"), Some("kept-id-1"));
    server.shutdown().await;

    let logs = logs.text();
    let handler_lines = lines_with(&logs, "handler ran");
    assert_eq!(handler_lines.len(), 2, "{logs}");
    assert!(
        handler_lines[0].contains(&format!("request{{request_id={generated}}}")),
        "{}",
        handler_lines[0]
    );
    assert!(
        handler_lines[1].contains("request{request_id=kept-id-1}"),
        "{}",
        handler_lines[1]
    );
}

#[tokio::test]
async fn replaced_ids_are_logged_by_length_only() {
    let (logs, _guard) = capture_logs();
    let server = TestServer::start(app(RequestIdLayer::new())).await;
    let long = "L".repeat(200);
    let response = fetch(&server, Some(&long)).await;
    let fresh = response.header("x-request-id").unwrap().to_owned();
    assert!(is_uuid(&fresh, 7));
    let response = fetch(&server, Some("drop table; --")).await;
    let fresh2 = response.header("x-request-id").unwrap().to_owned();
    server.shutdown().await;

    let logs = logs.text();
    assert!(!logs.contains(&long[..129]), "raw id logged:\n{logs}");
    assert!(!logs.contains("drop table"), "raw id logged:\n{logs}");
    let replaced = lines_with(&logs, "incoming request id replaced");
    assert_eq!(replaced.len(), 2, "{logs}");
    assert!(replaced[0].contains("length=200"), "{}", replaced[0]);
    assert!(
        replaced[0].contains("reason=\"invalid\""),
        "{}",
        replaced[0]
    );
    assert!(
        replaced[0].contains(&fresh),
        "logged inside the new id's span: {}",
        replaced[0]
    );
    assert!(replaced[1].contains("length=14"), "{}", replaced[1]);
    assert!(replaced[1].contains(&fresh2));
    let handler_lines = lines_with(&logs, "handler ran");
    assert!(handler_lines[0].contains(&fresh));
}

#[tokio::test]
async fn trace_layer_inside_is_a_child_of_the_request_span() {
    let (logs, _guard) = capture_logs();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(TraceLayer::new_for_http())
        .layer(RequestIdLayer::new());
    let server = TestServer::start(router).await;
    let response = fetch(&server, Some("inside-1")).await;
    assert_eq!(response.header("x-request-id"), Some("inside-1"));
    server.shutdown().await;

    let logs = logs.text();
    let finished = lines_with(&logs, "finished processing request");
    assert_eq!(finished.len(), 1, "{logs}");
    assert!(
        finished[0].contains("request{request_id=inside-1}"),
        "{}",
        finished[0]
    );
}

#[tokio::test]
async fn trace_layer_outside_gets_the_id_recorded_on_its_span() {
    let (logs, _guard) = capture_logs();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RequestIdLayer::builder().span_level(SpanLevel::Off).build().unwrap())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &http::Request<_>| {
            tracing::info_span!("http", method = %req.method(), request_id = tracing::field::Empty)
        }));
    let server = TestServer::start(router).await;
    let response = fetch(&server, None).await;
    let id = response.header("x-request-id").unwrap().to_owned();
    server.shutdown().await;

    let logs = logs.text();
    let finished = lines_with(&logs, "finished processing request");
    assert_eq!(finished.len(), 1, "{logs}");
    assert!(
        finished[0].contains(&format!("request_id={id}")),
        "{}",
        finished[0]
    );
    assert!(!logs.contains("request{"), "span off:\n{logs}");
}
