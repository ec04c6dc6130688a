//! What a line logged inside a request says about the request, through the preset and the
//! logger `palisade::telemetry` builds: the request id, once, and not the server span's other
//! attributes; with no spans exported, without a span per request.

use axum::{Router, body::Body, routing::get};
use http::Request;
use palisade::{
    PalisadeConfig, Stack,
    core::OverloadState,
    telemetry::{LogFormat, TracingConfig},
};
use palisade_testkit::LogCapture;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

/// Everything logged while the preset built from `config` serves one request with id `req-1`
/// under the logger of `tracing`. The handler logs one line saying whether it runs inside a
/// span, then one inside a span of its own.
async fn logged(config: PalisadeConfig, tracing: &TracingConfig) -> String {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let logger = tracing.log_layer(move || writer.clone()).unwrap();
    // As `TracingConfig::init` composes them: the logger, then the exporter's layer (which does
    // nothing with export off; with it on, these tests leave the exporter out).
    let exporter = (!tracing.enabled).then(|| tracing.build().unwrap());
    let subscriber = tracing_subscriber::Registry::default().with(logger).with(
        exporter
            .as_ref()
            .map(palisade::telemetry::TracingGuard::layer),
    );
    // This thread's subscriber: the current-thread runtime polls the request here.
    let _default = tracing::subscriber::set_default(subscriber);
    // Forget what the cases before wanted (their subscribers are gone).
    tracing::callsite::rebuild_interest_cache();
    let stack = Stack::builder()
        .config(config)
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    stack.health().mark_started();
    let app = stack.apply(Router::new().route(
        "/items",
        get(|| async {
            tracing::info!(
                in_span = !tracing::Span::current().is_none(),
                "inside the handler"
            );
            tracing::info_span!("work", n = 1).in_scope(|| tracing::info!("inside its own span"));
            "items"
        }),
    ));
    let request = Request::get("/items?page=2")
        .header("x-request-id", "req-1")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    capture.text()
}

/// The line of `text` containing `message`.
fn line<'a>(text: &'a str, message: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no line with {message:?} in {text}"))
}

fn exporting() -> TracingConfig {
    TracingConfig::default()
}

fn not_exporting() -> TracingConfig {
    TracingConfig {
        enabled: false,
        ..TracingConfig::default()
    }
}

/// One test, its cases one after another: `tracing` caches per call site whether any
/// subscriber wants it, so a subscriber of a test running beside this one (exporting, so
/// asking for the server span) would make the span here too.
#[tokio::test]
async fn lines_name_their_request() {
    exported_one_span_names_the_request_and_nothing_else().await;
    not_exported_no_span_is_made_and_lines_read_the_same().await;
    not_exported_json_lines_name_the_request_as_their_span().await;
    without_telemetry_the_request_id_layer_names_the_request().await;
    a_span_directive_in_the_log_filter_keeps_the_span().await;
}

async fn exported_one_span_names_the_request_and_nothing_else() {
    let text = logged(PalisadeConfig::default(), &exporting()).await;
    let handler = line(&text, "inside the handler");
    assert!(
        handler.contains("HTTP request{request_id=req-1}: "),
        "{handler}"
    );
    assert!(handler.contains("in_span=true"), "{handler}");
    assert!(
        !handler.contains("request{request_id=req-1}:HTTP"),
        "{handler}"
    );
    assert!(!handler.contains("url.path"), "{handler}");
}

async fn not_exported_no_span_is_made_and_lines_read_the_same() {
    let text = logged(PalisadeConfig::default(), &not_exporting()).await;
    let handler = line(&text, "inside the handler");
    assert!(
        handler.contains("in_span=false"),
        "a span per request: {handler}"
    );
    assert!(
        handler.contains(" INFO HTTP request{request_id=req-1}: log_context: inside the handler"),
        "{handler}"
    );
    let nested = line(&text, "inside its own span");
    assert!(
        nested.contains(" INFO HTTP request{request_id=req-1}:work{n=1}: log_context: "),
        "{nested}"
    );
}

async fn not_exported_json_lines_name_the_request_as_their_span() {
    let tracing = TracingConfig {
        log_format: LogFormat::Json,
        ..not_exporting()
    };
    let text = logged(PalisadeConfig::default(), &tracing).await;
    let handler: serde_json::Value =
        serde_json::from_str(line(&text, "inside the handler")).unwrap();
    assert_eq!(handler["message"], "inside the handler");
    assert_eq!(handler["in_span"], false);
    assert_eq!(
        handler["span"],
        serde_json::json!({"request_id": "req-1", "name": "HTTP request"})
    );
    // A span of the handler's own is the line's span, as with the server span before it.
    let nested: serde_json::Value =
        serde_json::from_str(line(&text, "inside its own span")).unwrap();
    assert_eq!(nested["span"]["name"], "work");
    // Outside a request, nothing is added.
    let outside: serde_json::Value = {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let logger = tracing.log_layer(move || writer.clone()).unwrap();
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::Registry::default().with(logger));
        tracing::callsite::rebuild_interest_cache();
        tracing::info!("outside any request");
        serde_json::from_str(line(&capture.text(), "outside any request")).unwrap()
    };
    assert!(outside.get("span").is_none(), "{outside}");
}

async fn without_telemetry_the_request_id_layer_names_the_request() {
    let mut config = PalisadeConfig::default();
    config.layers.telemetry = false;
    for tracing in [exporting(), not_exporting()] {
        let text = logged(config.clone(), &tracing).await;
        let handler = line(&text, "inside the handler");
        assert!(handler.contains("request{request_id=req-1}: "), "{handler}");
        assert!(!handler.contains("HTTP request"), "{handler}");
    }
}

async fn a_span_directive_in_the_log_filter_keeps_the_span() {
    // `[HTTP request]=debug`: debug lines inside the server span, which the filter must see.
    let tracing = TracingConfig {
        log_filter: "info,[HTTP request]=debug".to_owned(),
        ..not_exporting()
    };
    let text = logged(PalisadeConfig::default(), &tracing).await;
    let handler = line(&text, "inside the handler");
    assert!(handler.contains("in_span=true"), "{handler}");
    assert!(
        handler.contains("HTTP request{request_id=req-1}: "),
        "{handler}"
    );
}
