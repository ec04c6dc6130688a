//! The official W3C Trace Context test suite (w3c/trace-context `test/test.py`), every case of it,
//! run the way its harness runs: a real server with `TelemetryLayer` whose handler makes the
//! callbacks the harness asks for through `TracePropagationLayer` over hyper-util's client, a real
//! "harness" server recording the headers of those callbacks, and the case's header lines sent
//! byte for byte from a raw HTTP/1.1 client. `STRICT_LEVEL=2`, and the level 2 case too.
//!
//! The same cases run in the same test against a plain OpenTelemetry SDK service
//! (`TraceContextPropagator`, `SdkTracerProvider`), and the cases it fails must be the listed ones.
//!
//! The cases and their expectations are in `data/w3c_trace_context.json` (its `schema`,
//! `harness` and `implicit_checks` keys say what each field means). A last pass mutates every
//! passing output against each non-vacuous expectation and checks that the checker catches it.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::post,
};
use bytes::Bytes;
use common::WithDispatchLayer;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioExecutor};
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, Tracer, TracerProvider as _},
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use palisade_telemetry::{TelemetryLayer, TracePropagationLayer, TracingConfig};
use palisade_testkit::{TestServer, raw_exchange};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};
use tracing::Dispatch;
use tracing_subscriber::{Registry, layer::SubscriberExt};

const DATA: &str = include_str!("data/w3c_trace_context.json");

/// The cases the OpenTelemetry SDK's `TraceContextPropagator` fails (`opentelemetry_sdk` 0.33),
/// with the reason.
const SDK_FAILURES: &[(&str, &str)] = &[
    (
        "test_traceparent_duplicated#1",
        "reads the first traceparent field",
    ),
    (
        "test_traceparent_version_too_long#1",
        "parses the version as a number: 000",
    ),
    (
        "test_traceparent_version_too_long#2",
        "parses the version as a number: 0000",
    ),
    (
        "test_traceparent_version_too_short#1",
        "parses the version as a number: 0",
    ),
    (
        "test_traceparent_parent_id_too_short#1",
        "accepts a 15-digit parent id",
    ),
    (
        "test_traceparent_trace_flags_too_long#1",
        "parses the flags as a number: 001",
    ),
    (
        "test_traceparent_trace_flags_too_short#1",
        "parses the flags as a number: 1",
    ),
    (
        "test_tracestate_empty_header#3",
        "reads the first tracestate field only (empty)",
    ),
    (
        "test_tracestate_multiple_headers_different_keys#1",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_key_illegal_vendor_format#3",
        "refuses a key with two @, drops the whole list",
    ),
    (
        "test_tracestate_key_illegal_vendor_format#4",
        "refuses a key with two @, drops the whole list",
    ),
    (
        "test_tracestate_member_count_limit#1",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_member_count_limit#2",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_key_length_limit#1",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_key_length_limit#2",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_key_length_limit#3",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_key_length_limit#4",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_key_length_limit#5",
        "reads the first tracestate field only",
    ),
    (
        "test_tracestate_value_illegal_characters#2",
        "accepts and forwards an empty value (foo=)",
    ),
    (
        "test_propagates_random_flag#1",
        "propagates the sampled flag only",
    ),
];

/// The incoming parent id of every case that sends a `traceparent`.
const INCOMING_PARENT_ID: &str = "1234567890123456";

/// Header lines, in order: `(name, value)`.
type Lines = Vec<(String, String)>;

/// One request of the suite, as `data/w3c_trace_context.json` describes it.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // the JSON's fields, one to one
struct Case {
    id: String,
    name: String,
    step: u64,
    strict: bool,
    spec_level: u64,
    headers: Lines,
    callbacks: usize,
    expect_same_trace_id: Option<bool>,
    trace_id_equals: Option<String>,
    trace_id_not_equals: Vec<String>,
    expect_parent_id_changed: bool,
    trace_flags_bits_set: Option<u8>,
    distinct_trace_ids: Option<usize>,
    distinct_parent_ids: Option<usize>,
    tracestate_has: Vec<(String, String)>,
    tracestate_lacks: Vec<String>,
    tracestate_len: Option<usize>,
    tracestate_text_contains: Vec<String>,
    tracestate_text_contains_any: Vec<String>,
    tracestate_text_ordered: bool,
    tracestate_len_equals_step: Option<u64>,
    vacuous: bool,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|pair| {
            let pair = strings(pair);
            assert_eq!(pair.len(), 2, "{pair:?}");
            (pair[0].clone(), pair[1].clone())
        })
        .collect()
}

fn count(v: &Value) -> Option<usize> {
    v.as_u64().map(|n| usize::try_from(n).unwrap())
}

impl Case {
    fn from_json(v: &Value) -> Self {
        Self {
            id: v["id"].as_str().unwrap().to_owned(),
            name: v["name"].as_str().unwrap().to_owned(),
            step: v["step"].as_u64().unwrap(),
            strict: v["strict"].as_bool().unwrap(),
            spec_level: v["spec_level"].as_u64().unwrap(),
            headers: pairs(&v["headers"]),
            callbacks: count(&v["callbacks"]).unwrap(),
            expect_same_trace_id: v["expect_same_trace_id"].as_bool(),
            trace_id_equals: v["trace_id_equals"].as_str().map(str::to_owned),
            trace_id_not_equals: strings(&v["trace_id_not_equals"]),
            expect_parent_id_changed: v["expect_parent_id_changed"].as_bool() == Some(true),
            trace_flags_bits_set: v["trace_flags_bits_set"]
                .as_u64()
                .map(|m| u8::try_from(m).unwrap()),
            distinct_trace_ids: count(&v["distinct_trace_ids"]),
            distinct_parent_ids: count(&v["distinct_parent_ids"]),
            tracestate_has: pairs(&v["tracestate_has"]),
            tracestate_lacks: strings(&v["tracestate_lacks"]),
            tracestate_len: count(&v["tracestate_len"]),
            tracestate_text_contains: strings(&v["tracestate_text_contains"]),
            tracestate_text_contains_any: strings(&v["tracestate_text_contains_any"]),
            tracestate_text_ordered: v["tracestate_text_ordered"].as_bool().unwrap(),
            tracestate_len_equals_step: v["tracestate_len_equals_step"].as_u64(),
            vacuous: v["vacuous"].as_bool().unwrap(),
        }
    }
}

fn load_cases() -> Vec<Case> {
    let data: Value = serde_json::from_str(DATA).unwrap();
    assert_eq!(
        data["source"]["commit"], "acab820be9db7b3433668baa5cdd43f57f4c4be0",
        "the suite's commit after w3c/trace-context#584"
    );
    let cases: Vec<Case> = data["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(Case::from_json)
        .collect();
    assert_eq!(cases.len(), 83);
    assert_eq!(data["case_count"], 83);
    let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), cases.len(), "unique case ids");
    cases
}

// ---------------------------------------------------------------------------------------------
// What the harness reads from a callback (tracecontext/traceparent.py, tracestate.py).

/// A harness-parsed `traceparent`.
#[derive(Debug, Clone)]
struct Traceparent {
    trace_id: String,
    parent_id: String,
    flags: u8,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `get_traceparent`: exactly one field named `traceparent` (any case), split on `-` into exactly
/// four fields: version `00`, a trace id of 32 and a parent id of 16 lowercase hex digits, neither
/// all zero, and flags of 2 lowercase hex digits.
fn harness_traceparent(lines: &Lines) -> Result<Traceparent, String> {
    let values: Vec<&str> = lines
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
        .map(|(_, value)| value.as_str())
        .collect();
    let [value] = values[..] else {
        return Err(format!("expected one traceparent, got {values:?}"));
    };
    let fields: Vec<&str> = value.split('-').collect();
    let [version, trace_id, parent_id, flags] = fields[..] else {
        return Err(format!("traceparent {value:?}: not 4 fields"));
    };
    if version != "00" {
        return Err(format!("traceparent {value:?}: version is not 00"));
    }
    if !is_lower_hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
        return Err(format!("traceparent {value:?}: bad trace id"));
    }
    if !is_lower_hex(parent_id, 16) || parent_id.bytes().all(|b| b == b'0') {
        return Err(format!("traceparent {value:?}: bad parent id"));
    }
    if !is_lower_hex(flags, 2) {
        return Err(format!("traceparent {value:?}: bad flags"));
    }
    Ok(Traceparent {
        trace_id: trace_id.to_owned(),
        parent_id: parent_id.to_owned(),
        flags: u8::from_str_radix(flags, 16).unwrap(),
    })
}

/// Splits on the harness's `[ \t]*,[ \t]*`.
fn harness_split(line: &str) -> Vec<&str> {
    let pieces: Vec<&str> = line.split(',').collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let piece = if i > 0 {
                piece.trim_start_matches([' ', '\t'])
            } else {
                piece
            };
            if i < last {
                piece.trim_end_matches([' ', '\t'])
            } else {
                piece
            }
        })
        .collect()
}

/// `^[0-9a-z][_0-9a-z\-\*\/@]{0,255}$`
fn harness_key(key: &str) -> bool {
    key.len() <= 256
        && key
            .bytes()
            .next()
            .is_some_and(|b| matches!(b, b'0'..=b'9' | b'a'..=b'z'))
        && key
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'_' | b'-' | b'*' | b'/' | b'@'))
}

/// `^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$`
fn harness_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && !value.ends_with(' ')
}

/// `get_tracestate`: every field named `tracestate` (any case), merged in order; each non-empty
/// member must be `key=value` of the grammar, else the test errors; a repeated key keeps its
/// first value.
fn harness_tracestate(lines: &Lines) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (_, line) in lines
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("tracestate"))
    {
        for member in harness_split(line) {
            if member.is_empty() {
                continue;
            }
            let parsed = member
                .split_once('=')
                .filter(|(key, value)| harness_key(key) && harness_value(value));
            let Some((key, value)) = parsed else {
                return Err(format!("illegal key-value format {member:?}"));
            };
            if !out.iter().any(|(k, _)| k == key) {
                out.push((key.to_owned(), value.to_owned()));
            }
        }
    }
    Ok(out)
}

fn serialize(state: &[(String, String)]) -> String {
    state
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The failures of `case` given the header lines of its callbacks, and the number of members of
/// the first callback's tracestate (for `tracestate_len_equals_step`). `lens` holds that number
/// for the earlier steps of each method.
fn check(
    case: &Case,
    callbacks: &[Lines],
    lens: &HashMap<(String, u64), usize>,
) -> (Vec<String>, Option<usize>) {
    let mut failures = Vec::new();
    if callbacks.len() != case.callbacks {
        failures.push(format!(
            "{} callbacks made, {} asked",
            callbacks.len(),
            case.callbacks
        ));
        return (failures, None);
    }
    let mut parents = Vec::new();
    let mut first_len = None;
    for (i, lines) in callbacks.iter().enumerate() {
        let parent = match harness_traceparent(lines) {
            Ok(parent) => parent,
            Err(e) => {
                failures.push(format!("callback {i}: {e}"));
                continue;
            }
        };
        let state = match harness_tracestate(lines) {
            Ok(state) => state,
            Err(e) => {
                failures.push(format!("callback {i}: tracestate: {e}"));
                continue;
            }
        };
        if i == 0 {
            first_len = Some(state.len());
        }
        check_one(case, &parent, &state, lens, &mut failures);
        parents.push(parent);
    }
    let distinct = |f: fn(&Traceparent) -> &str| {
        let mut ids: Vec<&str> = parents.iter().map(f).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    if let Some(n) = case.distinct_trace_ids {
        let seen = distinct(|p| &p.trace_id);
        if seen != n {
            failures.push(format!("{seen} distinct trace ids, expected {n}"));
        }
    }
    if let Some(n) = case.distinct_parent_ids {
        let seen = distinct(|p| &p.parent_id);
        if seen != n {
            failures.push(format!("{seen} distinct parent ids, expected {n}"));
        }
    }
    (failures, first_len)
}

fn check_one(
    case: &Case,
    parent: &Traceparent,
    state: &[(String, String)],
    lens: &HashMap<(String, u64), usize>,
    failures: &mut Vec<String>,
) {
    if case.expect_same_trace_id == Some(true) {
        let expected = case.trace_id_equals.as_deref().unwrap();
        if parent.trace_id != expected {
            failures.push(format!("trace id {}, expected {expected}", parent.trace_id));
        }
    }
    for other in &case.trace_id_not_equals {
        if parent.trace_id == *other {
            failures.push(format!("trace id {other} kept"));
        }
    }
    if case.expect_parent_id_changed && parent.parent_id == INCOMING_PARENT_ID {
        failures.push("parent id not changed".to_owned());
    }
    if let Some(mask) = case.trace_flags_bits_set
        && parent.flags & mask != mask
    {
        failures.push(format!("flags {:02x} lack {mask:02x}", parent.flags));
    }
    let get = |key: &str| {
        state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    for (key, value) in &case.tracestate_has {
        if get(key) != Some(value.as_str()) {
            failures.push(format!(
                "tracestate {key} = {:?}, expected {value:?}",
                get(key)
            ));
        }
    }
    for key in &case.tracestate_lacks {
        if get(key).is_some() {
            failures.push(format!("tracestate has {key}"));
        }
    }
    if let Some(n) = case.tracestate_len
        && state.len() != n
    {
        failures.push(format!(
            "tracestate has {} members, expected {n}",
            state.len()
        ));
    }
    let text = serialize(state);
    let positions: Vec<Option<usize>> = case
        .tracestate_text_contains
        .iter()
        .map(|s| text.find(s.as_str()))
        .collect();
    for (s, at) in case.tracestate_text_contains.iter().zip(&positions) {
        if at.is_none() {
            failures.push(format!("tracestate {text:?} lacks {s:?}"));
        }
    }
    if case.tracestate_text_ordered && !positions.windows(2).all(|w| w[0] < w[1]) {
        failures.push(format!("tracestate {text:?} out of order"));
    }
    if !case.tracestate_text_contains_any.is_empty()
        && !case
            .tracestate_text_contains_any
            .iter()
            .any(|s| text.contains(s.as_str()))
    {
        failures.push(format!(
            "tracestate {text:?} has none of {:?}",
            case.tracestate_text_contains_any
        ));
    }
    if let Some(step) = case.tracestate_len_equals_step {
        match lens.get(&(case.name.clone(), step)) {
            Some(&n) if n == state.len() => {}
            other => failures.push(format!(
                "tracestate has {} members, step {step} had {other:?}",
                state.len()
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness: a recorder of callbacks, and a raw client.

/// The callback headers the harness server received, by scope and callback index.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<HashMap<String, Lines>>>);

async fn record(
    State(recorded): State<Recorded>,
    Path(scope): Path<String>,
    headers: HeaderMap,
    Json(_arguments): Json<Value>,
) -> Json<Value> {
    let lines = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    recorded.0.lock().unwrap().insert(scope, lines);
    Json(Value::Null)
}

/// Sends `case` to the service at `service` as the harness does (`Accept`, the case's lines as
/// written, a JSON body naming `callbacks` callback URLs) and returns the callbacks' headers.
async fn run_case(
    service: SocketAddr,
    harness: &TestServer,
    recorded: &Recorded,
    scope: &str,
    case: &Case,
) -> Result<Vec<Lines>, String> {
    let arguments: Vec<Value> = (0..case.callbacks)
        .map(|i| json!({"url": harness.url(&format!("/{scope}.{i}")), "arguments": []}))
        .collect();
    let body = serde_json::to_vec(&arguments).unwrap();
    let mut request =
        format!("POST /test HTTP/1.1\r\nHost: {service}\r\nAccept: application/json\r\n")
            .into_bytes();
    for (name, value) in &case.headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    request.extend_from_slice(&body);
    let response = raw_exchange(service, &request, Duration::from_secs(10)).await;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("service answered {response:?}"));
    }
    let mut recorded = recorded.0.lock().unwrap();
    Ok((0..case.callbacks)
        .filter_map(|i| recorded.remove(&format!("{scope}.{i}")))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The services under test.

type HyperClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

fn hyper_client() -> HyperClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// `POST` with the callback's JSON `arguments`, as the harness expects.
fn callback_request(action: &Value, headers: HeaderMap) -> Request<Full<Bytes>> {
    let mut request = Request::post(action["url"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(Full::from(
            serde_json::to_vec(&action["arguments"]).unwrap(),
        ))
        .unwrap();
    request.headers_mut().extend(headers);
    request
}

fn actions(body: &Value) -> Vec<Value> {
    body.as_array().cloned().unwrap_or_default()
}

/// Makes the callbacks one after the other through `client`; 502 if one fails.
async fn callbacks<C>(client: C, body: Value, headers: impl Fn() -> HeaderMap) -> StatusCode
where
    C: tower::Service<
            Request<Full<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = hyper_util::client::legacy::Error,
        > + Clone,
{
    for action in actions(&body) {
        let request = callback_request(&action, headers());
        match client.clone().oneshot(request).await {
            Ok(response) if response.status() == StatusCode::OK => {}
            _ => return StatusCode::BAD_GATEWAY,
        }
    }
    StatusCode::OK
}

/// Palisade: `TelemetryLayer` on the route, `TracePropagationLayer` (client spans on, the
/// default) on the callbacks' client.
fn palisade_service(dispatch: &Dispatch) -> Router {
    let client = TracePropagationLayer::new().layer(hyper_client());
    Router::new()
        .route(
            "/test",
            post(move |Json(body): Json<Value>| {
                let client = client.clone();
                async move { callbacks(client, body, HeaderMap::new).await }
            }),
        )
        .layer(TelemetryLayer::new())
        .layer(WithDispatchLayer(dispatch.clone()))
}

/// `opentelemetry_http::HeaderExtractor`, as SDK users write it.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// `opentelemetry_http::HeaderInjector`.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// A plain OpenTelemetry SDK service: `TraceContextPropagator` extracts the parent, the SDK
/// tracer (default sampler: parent-based, always on) starts a server span and a client span per
/// callback, and the propagator injects each client span's context.
fn sdk_service(provider: &SdkTracerProvider) -> Router {
    let tracer = provider.tracer("w3c-suite-sdk");
    let client = hyper_client();
    Router::new().route(
        "/test",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let (tracer, client) = (tracer.clone(), client.clone());
            async move {
                let propagator = TraceContextPropagator::new();
                let parent = propagator.extract(&HeaderExtractor(&headers));
                let server = tracer.start_with_context("POST /test", &parent);
                let server_cx = parent.with_span(server);
                let inject = || {
                    let span = tracer.start_with_context("POST", &server_cx);
                    let mut map = HeaderMap::new();
                    propagator
                        .inject_context(&server_cx.with_span(span), &mut HeaderInjector(&mut map));
                    map
                };
                callbacks(client, body, inject).await
            }
        }),
    )
}

/// Spans go nowhere: only the propagation is under test.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The test.

/// What a service did with every case.
struct Run {
    /// The callbacks' header lines, per case.
    outputs: Vec<Vec<Lines>>,
    /// The failed cases' ids, with why.
    failed: Vec<(String, Vec<String>)>,
    /// The number of tracestate members of each step (for `tracestate_len_equals_step`).
    lens: HashMap<(String, u64), usize>,
}

/// Runs every case against `service`.
async fn run_all(
    service: SocketAddr,
    harness: &TestServer,
    recorded: &Recorded,
    cases: &[Case],
    label: &str,
) -> Run {
    let mut outputs = Vec::new();
    let mut failed = Vec::new();
    let mut lens = HashMap::new();
    for (i, case) in cases.iter().enumerate() {
        let scope = format!("{label}{i}");
        let (failures, callbacks) = match run_case(service, harness, recorded, &scope, case).await {
            Ok(callbacks) => {
                let (failures, len) = check(case, &callbacks, &lens);
                if let Some(len) = len {
                    lens.insert((case.name.clone(), case.step), len);
                }
                (failures, callbacks)
            }
            Err(e) => (vec![e], Vec::new()),
        };
        if !failures.is_empty() {
            failed.push((case.id.clone(), failures));
        }
        outputs.push(callbacks);
    }
    Run {
        outputs,
        failed,
        lens,
    }
}

fn report(failed: &[(String, Vec<String>)]) -> String {
    failed
        .iter()
        .map(|(id, why)| format!("  {id}: {}", why.join("; ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_w3c_trace_context_suite_passes_and_the_sdk_differs_where_listed() {
    let cases = load_cases();
    assert!(cases.iter().any(|c| c.strict) && cases.iter().any(|c| c.spec_level == 2));

    let recorded = Recorded::default();
    let harness = TestServer::start(
        Router::new()
            .route("/{scope}", post(record))
            .with_state(recorded.clone()),
    )
    .await;

    let guard = TracingConfig {
        service_name: "w3c-suite".to_owned(),
        log_to_stdout: false,
        ..TracingConfig::default()
    }
    .build_with_exporter(Discard)
    .unwrap();
    let dispatch = Dispatch::new(Registry::default().with(guard.layer()));
    let palisade = TestServer::start(palisade_service(&dispatch)).await;
    let provider = SdkTracerProvider::builder().build();
    let sdk = TestServer::start(sdk_service(&provider)).await;

    let ours = run_all(palisade.addr(), &harness, &recorded, &cases, "palisade").await;
    let theirs = run_all(sdk.addr(), &harness, &recorded, &cases, "sdk").await;

    assert!(
        ours.failed.is_empty(),
        "{} of {} cases fail:\n{}",
        ours.failed.len(),
        cases.len(),
        report(&ours.failed)
    );
    let sdk_ids: Vec<&str> = theirs.failed.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<&str> = SDK_FAILURES.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        sdk_ids,
        expected,
        "the OpenTelemetry SDK's failures changed:\n{}",
        report(&theirs.failed)
    );

    // Every non-vacuous expectation can fail: a passing output, changed against it, is caught.
    for (case, output) in cases.iter().zip(&ours.outputs) {
        for (what, mutated) in mutations(case, output) {
            let (failures, _) = check(case, &mutated, &ours.lens);
            assert!(
                !failures.is_empty(),
                "{}: the check missed {what}: {mutated:?}",
                case.id
            );
        }
    }

    palisade.shutdown().await;
    sdk.shutdown().await;
    harness.shutdown().await;
    guard.shutdown().await.unwrap();
    provider.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Mutations of a passing output, one per expectation.

fn map_traceparent(lines: &Lines, f: impl Fn(&mut Vec<String>)) -> Lines {
    lines
        .iter()
        .map(|(name, value)| {
            if name.eq_ignore_ascii_case("traceparent") {
                let mut fields: Vec<String> = value.split('-').map(str::to_owned).collect();
                f(&mut fields);
                (name.clone(), fields.join("-"))
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect()
}

fn set_tracestate(lines: &Lines, members: &[String]) -> Lines {
    let mut out: Lines = lines
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("tracestate"))
        .cloned()
        .collect();
    if !members.is_empty() {
        out.push(("tracestate".to_owned(), members.join(",")));
    }
    out
}

fn members(lines: &Lines) -> Vec<String> {
    harness_tracestate(lines)
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// Outputs that each break one expectation of `case`, from its passing `output`.
fn mutations(case: &Case, output: &[Lines]) -> Vec<(String, Vec<Lines>)> {
    let each = |f: &dyn Fn(&Lines) -> Lines| output.iter().map(f).collect::<Vec<Lines>>();
    let mut out: Vec<(String, Vec<Lines>)> = vec![(
        "a missing traceparent".to_owned(),
        each(&|lines| {
            lines
                .iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("traceparent"))
                .cloned()
                .collect()
        }),
    )];
    if case.vacuous {
        return out;
    }
    if case.expect_same_trace_id == Some(true) {
        out.push((
            "another trace id".to_owned(),
            each(&|l| map_traceparent(l, |f| f[1] = "4bf92f3577b34da6a3ce929d0e0e4736".into())),
        ));
    }
    for kept in &case.trace_id_not_equals {
        let kept = kept.clone();
        out.push((
            format!("trace id {kept}"),
            each(&|l| map_traceparent(l, |f| f[1].clone_from(&kept))),
        ));
    }
    if case.expect_parent_id_changed {
        out.push((
            "the incoming parent id".to_owned(),
            each(&|l| map_traceparent(l, |f| f[2] = INCOMING_PARENT_ID.into())),
        ));
    }
    if case.trace_flags_bits_set.is_some() {
        out.push((
            "flags 00".to_owned(),
            each(&|l| map_traceparent(l, |f| f[3] = "00".into())),
        ));
    }
    if case.distinct_trace_ids.is_some() || case.distinct_parent_ids.is_some() {
        let mut changed: Vec<Lines> = output.to_vec();
        if case.distinct_trace_ids == Some(1) {
            changed[1] = map_traceparent(&changed[1], |f| {
                f[1] = "4bf92f3577b34da6a3ce929d0e0e4736".into();
            });
        }
        if case.distinct_parent_ids.is_some() {
            let first = harness_traceparent(&output[0]).unwrap().parent_id;
            for lines in &mut changed {
                *lines = map_traceparent(lines, |f| f[2].clone_from(&first));
            }
        }
        out.push(("repeated or mixed ids".to_owned(), changed));
    }
    let has_state = !case.tracestate_has.is_empty()
        || case.tracestate_len.is_some()
        || !case.tracestate_text_contains.is_empty()
        || !case.tracestate_text_contains_any.is_empty();
    if has_state {
        out.push((
            "no tracestate".to_owned(),
            each(&|l| set_tracestate(l, &[])),
        ));
    }
    for key in &case.tracestate_lacks {
        let member = format!("{key}=1");
        out.push((
            format!("a forwarded {member:?}"),
            each(&|l| {
                let mut members = members(l);
                members.insert(0, member.clone());
                set_tracestate(l, &members)
            }),
        ));
    }
    if case.tracestate_len.is_some() || case.tracestate_len_equals_step.is_some() {
        out.push((
            "one more member".to_owned(),
            each(&|l| {
                let mut members = members(l);
                members.push("zzz=1".to_owned());
                set_tracestate(l, &members)
            }),
        ));
    }
    if case.tracestate_text_ordered {
        out.push((
            "members reversed".to_owned(),
            each(&|l| {
                let mut members = members(l);
                members.reverse();
                set_tracestate(l, &members)
            }),
        ));
    }
    out
}
