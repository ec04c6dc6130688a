//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{Json, Router, http::HeaderMap, routing::get};
use palisade_request_id::{RequestId, RequestIdLayer};
use serde_json::{Value, json};

/// What the handler saw: the extractor, the request headers, and the current request id.
pub(crate) async fn echo(id: RequestId, headers: HeaderMap) -> Json<Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    tracing::info!("handler ran");
    Json(json!({
        "id": id.as_str(),
        "current": RequestId::current().map(|c| c.as_str().to_owned()),
        "x-request-id": header("x-request-id"),
        "x-correlation-id": header("x-correlation-id"),
    }))
}

/// `GET /` answered by [`echo`], behind `layer`.
pub(crate) fn app(layer: RequestIdLayer) -> Router {
    Router::new().route("/", get(echo)).layer(layer)
}

/// Whether `text` is a lower-case hyphenated UUID of `version`.
pub(crate) fn is_uuid(text: &str, version: usize) -> bool {
    text.len() == 36
        && text == text.to_ascii_lowercase()
        && uuid::Uuid::parse_str(text).is_ok_and(|u| u.get_version_num() == version)
}

/// A `tracing` writer that keeps everything written, for assertions on log lines.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A subscriber that writes plain fmt lines (with span fields) into a [`Captured`] buffer.
pub(crate) fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// A `metrics` recorder that counts, keyed `name{label=value,...}`.
#[derive(Clone, Default)]
pub(crate) struct Counts {
    counters: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
    described: Arc<Mutex<Vec<String>>>,
}

struct CounterCell(Arc<AtomicU64>);

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Counts {
    pub(crate) fn get(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
    pub(crate) fn described(&self) -> Vec<String> {
        self.described.lock().unwrap().clone()
    }
}

impl metrics::Recorder for Counts {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        let cell = self
            .counters
            .lock()
            .unwrap()
            .entry(name)
            .or_default()
            .clone();
        metrics::Counter::from_arc(Arc::new(CounterCell(cell)))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}
