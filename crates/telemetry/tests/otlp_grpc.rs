//! Spans exported over OTLP/gRPC to a real tonic receiver: names, attributes, status, parent and
//! child links across an incoming `traceparent` and an outgoing call, and span ends.

mod common;

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, body::Body, routing::get};
use bytes::Bytes;
use common::{
    Received, WithDispatchLayer, grpc_receiver, hex, int_attr, one, string_array_attr, string_attr,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::trace::v1::{
    Span, span::SpanKind, status::StatusCode as OtlpStatus,
};
use palisade_request_id::RequestIdLayer;
use palisade_telemetry::{
    TelemetryLayer, TraceId, TracePropagationLayer, TraceSampler, TracingConfig, TracingGuard,
};
use palisade_testkit::{Client, TestServer};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};
use tracing::Dispatch;
use tracing_subscriber::{Registry, layer::SubscriberExt};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

struct Pipeline {
    guard: TracingGuard,
    dispatch: Dispatch,
    received: Received,
}

async fn pipeline(sampler: TraceSampler) -> Pipeline {
    let (addr, received) = grpc_receiver().await;
    let guard = TracingConfig {
        service_name: "telemetry-test".to_owned(),
        endpoint: Some(format!("http://{addr}")),
        scheduled_delay: Duration::from_millis(50),
        sampler,
        log_to_stdout: false,
        ..TracingConfig::default()
    }
    .build()
    .unwrap();
    let dispatch = Dispatch::new(Registry::default().with(guard.layer()));
    Pipeline {
        guard,
        dispatch,
        received,
    }
}

fn get_with(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

fn by_path<'a>(spans: &'a [Span], path: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| string_attr(&s.attributes, "url.path").as_deref() == Some(path))
        .collect();
    assert_eq!(found.len(), 1, "server spans for {path}");
    found[0]
}

fn status_code(span: &Span) -> i32 {
    span.status.as_ref().map_or(0, |s| s.code)
}

/// The span of the traced request with every attribute the conventions ask for.
fn assert_conventions(item: &Span, port: i64) {
    let a = &item.attributes;
    assert_eq!(item.name, "GET /items/{id}");
    assert_eq!(item.kind, SpanKind::Server as i32);
    assert_eq!(hex(&item.trace_id), TRACE, "continues the caller's trace");
    assert_eq!(
        hex(&item.parent_span_id),
        PARENT,
        "child of the caller's span"
    );
    assert_eq!(item.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(status_code(item), OtlpStatus::Unset as i32);
    assert_eq!(
        string_attr(a, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(string_attr(a, "url.path").as_deref(), Some("/items/42"));
    assert_eq!(string_attr(a, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        string_attr(a, "url.query").as_deref(),
        Some("token=REDACTED&page=2")
    );
    assert_eq!(string_attr(a, "http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(int_attr(a, "http.response.status_code"), Some(200));
    assert_eq!(
        string_attr(a, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        string_attr(a, "user_agent.original").as_deref(),
        Some("palisade-test/1.0")
    );
    assert_eq!(
        string_attr(a, "client.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        string_attr(a, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(int_attr(a, "server.port"), Some(port));
    assert_eq!(
        string_array_attr(a, "http.request.header.x-tenant"),
        Some(vec!["t1".to_owned()])
    );
    assert_eq!(
        string_array_attr(a, "http.response.header.content-type"),
        Some(vec!["text/plain; charset=utf-8".to_owned()])
    );
    assert!(string_attr(a, "error.type").is_none());
    let all = format!("{:?}", item.attributes);
    assert!(!all.contains("secret"), "no credential anywhere: {all}");
    assert!(!all.contains("abc"), "no raw query value: {all}");
    for absent in [
        "code.file.path",
        "busy_ns",
        "thread.id",
        "http.request.method_original",
    ] {
        assert!(!all.contains(absent), "{absent} recorded: {all}");
    }
}

/// Status, names and parents of the other requests of the conventions test.
fn assert_statuses_names_and_parents(spans: &[Span]) {
    let fail = by_path(spans, "/fail");
    assert_eq!(fail.name, "GET /fail");
    assert_eq!(
        status_code(fail),
        OtlpStatus::Error as i32,
        "5xx is an error"
    );
    assert_eq!(
        string_attr(&fail.attributes, "error.type").as_deref(),
        Some("500")
    );
    assert!(
        fail.parent_span_id.is_empty(),
        "no incoming context: a root span"
    );

    let teapot = by_path(spans, "/teapot");
    assert_eq!(
        status_code(teapot),
        OtlpStatus::Unset as i32,
        "4xx leaves it unset"
    );
    assert_eq!(
        int_attr(&teapot.attributes, "http.response.status_code"),
        Some(418)
    );
    assert!(string_attr(&teapot.attributes, "error.type").is_none());

    let unmatched = by_path(spans, "/no/such/route");
    assert_eq!(unmatched.name, "GET", "no route: the method alone");
    assert!(string_attr(&unmatched.attributes, "http.route").is_none());
    assert_eq!(
        int_attr(&unmatched.attributes, "http.response.status_code"),
        Some(404)
    );

    let brew = by_path(spans, "/coffee");
    assert_eq!(brew.name, "HTTP");
    assert_eq!(
        string_attr(&brew.attributes, "http.request.method").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        string_attr(&brew.attributes, "http.request.method_original").as_deref(),
        Some("BREW")
    );

    for path in ["/items/43", "/items/44"] {
        let span = by_path(spans, path);
        assert_ne!(
            hex(&span.trace_id),
            TRACE,
            "{path}: invalid context, new trace"
        );
        assert!(span.parent_span_id.is_empty(), "{path}: a root span");
        assert_eq!(span.trace_id.len(), 16);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_spans_follow_the_semantic_conventions() {
    let p = pipeline(TraceSampler::ParentBasedAlwaysOn).await;
    let layer = TelemetryLayer::builder()
        .record_query(true)
        .request_header("x-tenant")
        .response_header("content-type")
        .record_client_subject(true)
        .build()
        .unwrap();
    // As `palisade::serve` does after a mutual-TLS handshake.
    let identity = palisade_core::ClientIdentity::new(
        Vec::new(),
        "CN=orders,O=Example",
        "01",
        SystemTime::UNIX_EPOCH,
    );
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
        .layer(layer)
        .layer(axum::middleware::map_request(
            move |mut request: Request<Body>| {
                let identity = identity.clone();
                async move {
                    request.extensions_mut().insert(identity);
                    request
                }
            },
        ))
        .layer(WithDispatchLayer(p.dispatch.clone()));
    let server = TestServer::start(app).await;
    let port = i64::from(server.addr().port());
    let client = Client::new();

    let parent = format!("00-{TRACE}-{PARENT}-01");
    let response = client
        .send(get_with(
            &server.url("/items/42?token=abc&page=2"),
            &[
                ("traceparent", &parent),
                ("tracestate", "congo=t61rcWkgMzE"),
                ("user-agent", "palisade-test/1.0"),
                ("x-tenant", "t1"),
                ("authorization", "Bearer secret"),
            ],
        ))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(client.get(&server.url("/fail")).await.status, 500);
    assert_eq!(client.get(&server.url("/teapot")).await.status, 418);
    assert_eq!(client.get(&server.url("/no/such/route")).await.status, 404);
    let brew = Request::builder()
        .method(Method::from_bytes(b"BREW").unwrap())
        .uri(server.url("/coffee"))
        .body(Full::default())
        .unwrap();
    assert_eq!(client.send(brew).await.status, 404);
    let upper = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    client
        .send(get_with(
            &server.url("/items/43"),
            &[("traceparent", &upper)],
        ))
        .await;
    let mut duplicated = get_with(&server.url("/items/44"), &[("traceparent", &parent)]);
    duplicated
        .headers_mut()
        .append("traceparent", parent.parse().unwrap());
    client.send(duplicated).await;

    let spans = p.received.wait_for(7).await;
    assert!(
        p.received
            .spans()
            .iter()
            .all(|(service, _)| service == "telemetry-test")
    );

    assert_conventions(by_path(&spans, "/items/42"), port);
    assert_eq!(
        string_attr(
            &by_path(&spans, "/items/42").attributes,
            "tls.client.subject"
        )
        .as_deref(),
        Some("CN=orders,O=Example")
    );

    assert_statuses_names_and_parents(&spans);

    server.shutdown().await;
    p.guard.shutdown().await.unwrap();
}

async fn call(
    client: impl tower::Service<
        Request<Full<Bytes>>,
        Response = http::Response<hyper::body::Incoming>,
        Error = hyper_util::client::legacy::Error,
    >,
    url: String,
) -> String {
    let response = client
        .oneshot(Request::get(url).body(Full::default()).unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn echo_traceparent() -> Router {
    Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            headers
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_call_another_service_continue_the_trace() {
    let p = pipeline(TraceSampler::ParentBasedAlwaysOn).await;
    let downstream = TestServer::start(
        echo_traceparent()
            .layer(TelemetryLayer::new())
            .layer(WithDispatchLayer(p.dispatch.clone())),
    )
    .await;
    let echo_url = downstream.url("/echo");
    let hyper_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
    let with_span = TracePropagationLayer::new().layer(hyper_client.clone());
    let without_span = TracePropagationLayer::new()
        .without_client_span()
        .layer(hyper_client);
    let upstream = Router::new()
        .route(
            "/call",
            get(move |trace: TraceId| {
                let (with_span, without_span) = (with_span.clone(), without_span.clone());
                let url = echo_url.clone();
                async move {
                    let via_client_span = call(with_span, url.clone()).await;
                    let direct = call(without_span, url).await;
                    Json(json!({
                        "trace": trace.to_string(),
                        "current": TraceId::current().map(|t| t.to_string()),
                        "via_client_span": via_client_span,
                        "direct": direct,
                    }))
                }
            }),
        )
        .layer(TelemetryLayer::new())
        .layer(WithDispatchLayer(p.dispatch.clone()));
    let upstream = TestServer::start(upstream).await;

    let parent = format!("00-{TRACE}-{PARENT}-01");
    let response = Client::new()
        .send(get_with(
            &upstream.url("/call"),
            &[("traceparent", &parent)],
        ))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen: Value = response.json();
    assert_eq!(
        seen["trace"], TRACE,
        "the extractor shows the caller's trace id"
    );
    assert_eq!(seen["current"], TRACE);

    // Upstream server span, its client span, two downstream server spans.
    let spans = p.received.wait_for(4).await;
    assert_eq!(
        spans.len(),
        4,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(spans.iter().all(|s| hex(&s.trace_id) == TRACE), "one trace");
    let server = one(&spans, "GET /call");
    let client_span = one(&spans, "GET");
    assert_eq!(hex(&server.parent_span_id), PARENT);
    assert_eq!(client_span.kind, SpanKind::Client as i32);
    assert_eq!(
        client_span.parent_span_id, server.span_id,
        "client span under the server span"
    );
    let a = &client_span.attributes;
    assert_eq!(string_attr(a, "url.full"), Some(downstream.url("/echo")));
    assert_eq!(
        string_attr(a, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        int_attr(a, "server.port"),
        Some(i64::from(downstream.addr().port()))
    );
    assert_eq!(int_attr(a, "http.response.status_code"), Some(200));

    let downstream_spans: Vec<&Span> = spans.iter().filter(|s| s.name == "GET /echo").collect();
    assert_eq!(downstream_spans.len(), 2);
    let under_client = downstream_spans
        .iter()
        .find(|s| s.parent_span_id == client_span.span_id)
        .expect("a downstream span under the client span");
    let under_server = downstream_spans
        .iter()
        .find(|s| s.parent_span_id == server.span_id)
        .expect("a downstream span under the server span (no client span)");
    assert_eq!(under_client.kind, SpanKind::Server as i32);
    assert_eq!(under_server.kind, SpanKind::Server as i32);

    assert_eq!(
        seen["via_client_span"],
        format!("00-{TRACE}-{}-01", hex(&client_span.span_id))
    );
    assert_eq!(
        seen["direct"],
        format!("00-{TRACE}-{}-01", hex(&server.span_id))
    );

    upstream.shutdown().await;
    downstream.shutdown().await;
    p.guard.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_traces_are_propagated_but_not_exported() {
    let p = pipeline(TraceSampler::ParentBasedAlwaysOn).await;
    let client = TracePropagationLayer::new().layer(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>(),
    );
    let downstream = TestServer::start(echo_traceparent()).await;
    let echo_url = downstream.url("/echo");
    let app = Router::new()
        .route(
            "/call",
            get(move |trace: TraceId| {
                let (client, url) = (client.clone(), echo_url.clone());
                async move { format!("{trace} {}", call(client, url).await) }
            }),
        )
        .layer(TelemetryLayer::new())
        .layer(WithDispatchLayer(p.dispatch.clone()));
    let server = TestServer::start(app).await;

    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    let response = Client::new()
        .send(get_with(
            &server.url("/call"),
            &[("traceparent", &unsampled)],
        ))
        .await;
    let text = response.text();
    let (trace, forwarded) = text.split_once(' ').unwrap();
    assert_eq!(trace, TRACE, "the trace id is known even when not sampled");
    assert!(
        forwarded.starts_with(&format!("00-{TRACE}-")),
        "{forwarded}"
    );
    assert!(
        forwarded.ends_with("-00"),
        "the decision travels: {forwarded}"
    );
    assert!(!forwarded.contains(PARENT), "a new parent id: {forwarded}");

    // A sampled request afterwards: once its spans are in, the unsampled ones would be too.
    let sampled = format!("00-{}-{PARENT}-01", "1".repeat(32));
    Client::new()
        .send(get_with(&server.url("/call"), &[("traceparent", &sampled)]))
        .await;
    let spans = p.received.wait_for(2).await;
    assert!(spans.iter().all(|s| hex(&s.trace_id) == "1".repeat(32)));

    server.shutdown().await;
    downstream.shutdown().await;
    p.guard.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_recorded_in_either_order() {
    let p = pipeline(TraceSampler::AlwaysOn).await;
    // Preset order: request id outside, telemetry inside.
    let outer = Router::new()
        .route("/outer", get(|| async { "ok" }))
        .layer(TelemetryLayer::new())
        .layer(RequestIdLayer::new())
        .layer(WithDispatchLayer(p.dispatch.clone()));
    // Telemetry outside: the request id layer records the id on the current (server) span.
    let inner = Router::new()
        .route("/inner", get(|| async { "ok" }))
        .layer(RequestIdLayer::new())
        .layer(TelemetryLayer::new())
        .layer(WithDispatchLayer(p.dispatch.clone()));
    let server = TestServer::start(outer.merge(inner)).await;
    let client = Client::new();
    let first = client
        .send(get_with(
            &server.url("/outer"),
            &[("x-request-id", "req-outer-1")],
        ))
        .await;
    assert_eq!(first.header("x-request-id"), Some("req-outer-1"));
    let second = client.get(&server.url("/inner")).await;
    let generated = second.header("x-request-id").unwrap().to_owned();

    let spans = p.received.wait_for(2).await;
    assert_eq!(
        string_attr(&by_path(&spans, "/outer").attributes, "request_id").as_deref(),
        Some("req-outer-1")
    );
    assert_eq!(
        string_attr(&by_path(&spans, "/inner").attributes, "request_id"),
        Some(generated)
    );
    assert!(
        spans.iter().all(|s| s.name != "request"),
        "request-id spans are not exported as traces of their own"
    );

    server.shutdown().await;
    p.guard.shutdown().await.unwrap();
}

/// A body that sends one chunk, then ends when the test releases it, or fails when the test
/// drops the release.
struct GatedBody {
    first: Option<Bytes>,
    gate: oneshot::Receiver<()>,
}

impl http_body::Body for GatedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        Pin::new(&mut self.gate)
            .poll(cx)
            .map(|released| match released {
                Ok(()) => None,
                Err(_) => Some(Err(std::io::Error::other("upstream went away"))),
            })
    }
}

fn nanos(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_span_ends_when_the_body_ends_not_at_the_headers() {
    let p = pipeline(TraceSampler::AlwaysOn).await;
    let gates = std::sync::Arc::new(std::sync::Mutex::new(Vec::<oneshot::Receiver<()>>::new()));
    let handler_gates = gates.clone();
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let gate = handler_gates.lock().unwrap().pop().unwrap();
                async move {
                    Body::new(GatedBody {
                        first: Some(Bytes::from_static(b"first chunk")),
                        gate,
                    })
                }
            }),
        )
        .layer(TelemetryLayer::new())
        .layer(WithDispatchLayer(p.dispatch.clone()));
    let server = TestServer::start(app.clone()).await;
    let client = Client::new();

    // Completed: the span ends after the test released the body.
    let (release, gate) = oneshot::channel();
    gates.lock().unwrap().push(gate);
    let response = client
        .send_streaming(
            Request::get(server.url("/stream"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let released_at = SystemTime::now();
    release.send(()).unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "first chunk");
    let spans = p.received.wait_for(1).await;
    assert!(
        spans[0].end_time_unix_nano >= nanos(released_at),
        "the span ended before the body did"
    );
    assert!(spans[0].start_time_unix_nano < nanos(released_at));
    assert_eq!(status_code(&spans[0]), OtlpStatus::Unset as i32);

    // Failed: the body errors after a 200 head; the span ends as an error.
    let (release, gate) = oneshot::channel::<()>();
    gates.lock().unwrap().push(gate);
    let response = app
        .clone()
        .oneshot(Request::get("/stream").body(Body::empty()).unwrap())
        .await
        .unwrap();
    drop(release);
    assert!(response.into_body().collect().await.is_err());
    let spans = p.received.wait_for(2).await;
    let failed = spans.last().unwrap();
    assert_eq!(status_code(failed), OtlpStatus::Error as i32);
    assert_eq!(
        string_attr(&failed.attributes, "error.type").as_deref(),
        Some("response_body_error")
    );

    // Dropped: the body is dropped unfinished (the client went away); the span still ends.
    let (_release, gate) = oneshot::channel::<()>();
    gates.lock().unwrap().push(gate);
    let response = app
        .oneshot(Request::get("/stream").body(Body::empty()).unwrap())
        .await
        .unwrap();
    drop(response);
    let spans = p.received.wait_for(3).await;
    assert_eq!(spans.len(), 3);
    assert_eq!(status_code(&spans[2]), OtlpStatus::Unset as i32);

    server.shutdown().await;
    p.guard.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_looks_past_spans_the_exporter_leaves_out() {
    // Telemetry outside request-id: in the handler, the current tracing span is request-id's
    // `request` span, which the OpenTelemetry layer filters out (a log layer, as `init` installs,
    // keeps it alive). Outgoing calls and `TraceId::current` must still use the server span.
    let mut p = pipeline(TraceSampler::AlwaysOn).await;
    p.dispatch = Dispatch::new(
        Registry::default()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(p.guard.layer()),
    );
    let downstream = TestServer::start(echo_traceparent()).await;
    let echo_url = downstream.url("/echo");
    let client = TracePropagationLayer::new().without_client_span().layer(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>(),
    );
    let app = Router::new()
        .route(
            "/call",
            get(move || {
                let (client, url) = (client.clone(), echo_url.clone());
                async move {
                    let current = TraceId::current()
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    format!("{current} {}", call(client, url).await)
                }
            }),
        )
        .layer(RequestIdLayer::new())
        .layer(TelemetryLayer::new())
        .layer(WithDispatchLayer(p.dispatch.clone()));
    let server = TestServer::start(app).await;
    let response = Client::new().get(&server.url("/call")).await;
    let text = response.text();
    let (current, forwarded) = text.split_once(' ').unwrap();

    let spans = p.received.wait_for(1).await;
    let span = one(&spans, "GET /call");
    assert_eq!(current, hex(&span.trace_id));
    assert_eq!(
        forwarded,
        format!("00-{}-{}-01", hex(&span.trace_id), hex(&span.span_id))
    );

    server.shutdown().await;
    downstream.shutdown().await;
    p.guard.shutdown().await.unwrap();
}
