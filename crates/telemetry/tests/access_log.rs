//! The access log and JSON logs against a real server and a real client: one JSON line per
//! request with its fields (a 200, a 404, a shed 503, a 429, a body that fails midway), the query
//! redacted, sampling that keeps every failure, client address modes, and `request_id` and
//! `trace_id` on the lines logged inside a request.
//!
//! One test (one process-wide subscriber): access log events are written when a response body
//! ends, on the server's connection task, which only the global subscriber sees.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use palisade_core::{NoGuard, Rejection};
use palisade_request_id::RequestIdLayer;
use palisade_telemetry::{
    AccessLogConfig, ClientAddress, LogFormat, TelemetryLayer, TracingConfig, TracingGuard,
};
use palisade_testkit::LogCapture;
use serde_json::Value;
use tokio::net::TcpListener;
use tracing_subscriber::{Registry, layer::SubscriberExt};

/// Every line the subscriber wrote.
#[derive(Clone, Default)]
struct Lines(LogCapture);

impl Lines {
    fn json(&self) -> Vec<Value> {
        self.0
            .text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The access lines of requests whose id starts with `prefix`.
    fn access(&self, prefix: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|l| l["target"] == "palisade::access")
            .filter(|l| {
                l["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(prefix))
            })
            .collect()
    }

    /// Waits (up to 10 s) for the access line of request `id`.
    async fn access_line(&self, id: &str) -> Value {
        for _ in 0..1000 {
            if let Some(line) = self.access(id).into_iter().find(|l| l["request_id"] == id) {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no access line for {id}: {:?}", self.json());
    }
}

/// Installs the process-wide subscriber: JSON lines into `Lines`, and an OpenTelemetry layer so
/// spans have trace ids (nothing is exported during the test: the first batch is due in an hour).
fn install() -> (Lines, TracingGuard) {
    let lines = Lines::default();
    let config = TracingConfig {
        log_format: LogFormat::Json,
        log_filter: "info".to_owned(),
        log_to_stdout: false,
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        scheduled_delay: Duration::from_secs(3600),
        ..TracingConfig::default()
    };
    let guard = config.build().unwrap();
    let writer = lines.0.clone();
    let subscriber = Registry::default()
        .with(config.log_layer(move || writer.clone()).unwrap())
        .with(guard.layer());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    (lines, guard)
}

fn rejection(status: StatusCode, reason: &'static str) -> Response {
    Rejection::builder(status, reason)
        .build()
        .unwrap()
        .response::<Body, NoGuard>()
        .map(Body::new)
}

fn app(access_log: AccessLogConfig) -> Router {
    let telemetry = TelemetryLayer::builder()
        .access_log(access_log)
        .log_format(LogFormat::Json)
        .build()
        .unwrap();
    Router::new()
        .route(
            "/items/{id}",
            get(|| async {
                tracing::info!("inside the handler");
                "item"
            }),
        )
        .route("/ok", get(|| async { "ok" }))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/shed",
            get(|| async { rejection(StatusCode::SERVICE_UNAVAILABLE, "overloaded") }),
        )
        .route(
            "/limited",
            get(|| async { rejection(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded") }),
        )
        .route(
            "/broken",
            get(|| async {
                let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(b"abc")),
                    Err(std::io::Error::other("disk gone")),
                ];
                Body::from_stream(tokio_stream::iter(chunks)).into_response()
            }),
        )
        .layer(telemetry)
        .layer(RequestIdLayer::new())
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// Sends `GET path` with request id `id` and reads the whole body (an error midway is fine):
/// the status, or `None` when the connection broke before the response head arrived.
async fn try_get(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    id: &str,
) -> Option<StatusCode> {
    let request = Request::get(format!("http://{addr}{path}"))
        .header("x-request-id", id)
        .header("user-agent", "access-log-test/1.0")
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    Some(status)
}

async fn get_with_id(client: &HttpClient, addr: SocketAddr, path: &str, id: &str) -> StatusCode {
    try_get(client, addr, path, id)
        .await
        .unwrap_or_else(|| panic!("GET {path}: no response"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_and_json_logs() {
    let (lines, _guard) = install();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    // Every request logged, the default truncated client address.
    let addr = serve(app(AccessLogConfig::on())).await;
    let cases = [
        ("/items/7?token=secret&page=2", "all-200", 200),
        ("/nowhere", "all-404", 404),
        ("/shed", "all-503", 503),
        ("/limited", "all-429", 429),
    ];
    for (path, id, status) in cases {
        assert_eq!(get_with_id(&client, addr, path, id).await.as_u16(), status);
    }
    // The body fails after its first chunk: hyper may abort the connection before the client
    // has read the head.
    let _ = try_get(&client, addr, "/broken", "all-broken").await;

    let ok = lines.access_line("all-200").await;
    assert_eq!(ok["level"], "INFO");
    assert_eq!(ok["message"], "request");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["route"], "/items/{id}");
    assert_eq!(ok["path"], "/items/7");
    assert_eq!(
        ok["query"], "token=REDACTED&page=2",
        "the query is redacted as on spans"
    );
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["bytes_sent"], 4, "\"item\"");
    assert_eq!(ok["outcome"], "served");
    assert_eq!(ok["body"], "completed");
    assert_eq!(ok["client"], "127.0.0.0", "truncated to the /24 by default");
    assert_eq!(ok["user_agent"], "access-log-test/1.0");
    assert!(ok["duration_ms"].as_f64().unwrap() >= 0.0);
    let trace_id = ok["trace_id"].as_str().expect("a trace id");
    assert_eq!(trace_id.len(), 32);
    assert!(trace_id.bytes().all(|b| b.is_ascii_hexdigit()));

    let not_found = lines.access_line("all-404").await;
    assert_eq!(not_found["route"], "unmatched");
    assert_eq!(not_found["status"], 404);
    assert_eq!(not_found["outcome"], "served", "the application's own 404");

    let shed = lines.access_line("all-503").await;
    assert_eq!(shed["status"], 503);
    assert_eq!(shed["outcome"], "overloaded", "the refusal's reason");
    assert!(
        shed["bytes_sent"].as_u64().unwrap() > 0,
        "the problem document"
    );

    let limited = lines.access_line("all-429").await;
    assert_eq!(limited["outcome"], "quota_exceeded");

    let broken = lines.access_line("all-broken").await;
    assert_eq!(broken["status"], 200);
    assert_eq!(broken["body"], "errored");
    assert_eq!(broken["bytes_sent"], 3, "what was sent before the failure");

    // Nothing of the redacted value anywhere, spans' fields included.
    let all = lines.0.text();
    assert!(
        !all.contains("secret"),
        "a redacted value reached a log line"
    );

    // A line logged inside the request carries the request's id and trace id.
    let inside = lines
        .json()
        .into_iter()
        .find(|l| l["message"] == "inside the handler" && l["span"]["request_id"] == "all-200")
        .expect("the handler's line, inside the server span");
    assert_eq!(inside["span"]["trace_id"], trace_id);

    // HEAD: axum drops the body after the layer; the line still says it completed.
    let request = Request::head(format!("http://{addr}/ok"))
        .header("x-request-id", "all-head")
        .body(Empty::new())
        .unwrap();
    assert_eq!(client.request(request).await.unwrap().status(), 200);
    let head = lines.access_line("all-head").await;
    assert_eq!(head["method"], "HEAD");
    assert_eq!(head["body"], "completed");

    // A request dropped before its response (the client went away) is cancelled, not an error.
    let hang = Request::get("/hang")
        .header("x-request-id", "all-cancelled")
        .body(Body::empty())
        .unwrap();
    let call = tower::ServiceExt::oneshot(app(AccessLogConfig::on()), hang);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err()
    );
    let cancelled = lines.access_line("all-cancelled").await;
    assert_eq!(cancelled["status"], 0);
    assert_eq!(cancelled["outcome"], "cancelled");
    assert_eq!(cancelled["body"], "none");

    sampling_keeps_every_failure(&lines, &client).await;
    client_address_modes(&lines, &client).await;
}

/// 1 in 3 successes, every failure.
async fn sampling_keeps_every_failure(lines: &Lines, client: &HttpClient) {
    let mut every_third = AccessLogConfig::on();
    every_third.sample_successes = 3;
    let sampled = serve(app(every_third)).await;
    for i in 0..6 {
        get_with_id(client, sampled, "/ok", &format!("sampled-ok-{i}")).await;
    }
    for i in 0..2 {
        get_with_id(client, sampled, "/shed", &format!("sampled-shed-{i}")).await;
        get_with_id(client, sampled, "/nowhere", &format!("sampled-404-{i}")).await;
    }
    lines.access_line("sampled-404-1").await;
    let kept = lines.access("sampled-");
    let count = |prefix: &str| {
        kept.iter()
            .filter(|l| l["request_id"].as_str().unwrap().starts_with(prefix))
            .count()
    };
    assert_eq!(count("sampled-ok-"), 2, "1 in 3 of 6 successes");
    assert_eq!(count("sampled-shed-"), 2, "every refusal");
    assert_eq!(count("sampled-404-"), 2, "every 4xx");
}

async fn client_address_modes(lines: &Lines, client: &HttpClient) {
    for (mode, id) in [
        (ClientAddress::Full, "mode-full"),
        (ClientAddress::Hashed, "mode-hashed"),
        (ClientAddress::Omitted, "mode-omitted"),
    ] {
        let mut config = AccessLogConfig::on();
        config.client_address = mode;
        let addr = serve(app(config)).await;
        get_with_id(client, addr, "/ok", id).await;
    }
    assert_eq!(lines.access_line("mode-full").await["client"], "127.0.0.1");
    let hashed = lines.access_line("mode-hashed").await;
    let hashed = hashed["client"].as_str().unwrap();
    assert_eq!(hashed.len(), 16);
    assert!(!hashed.contains("127"), "{hashed}");
    assert!(
        lines
            .access_line("mode-omitted")
            .await
            .get("client")
            .is_none()
    );
}
