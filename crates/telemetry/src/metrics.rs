//! The metrics this crate emits, through the `metrics` facade.
//!
//! HTTP server metrics follow the OpenTelemetry HTTP semantic conventions, in their Prometheus
//! form:
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `http_route`, `http_response_status_code` | `http.server.request.duration`: from the request entering the layer to the response body ending (completed, failed or dropped) |
//! | `http_server_active_requests` | gauge | `http_request_method`, `url_scheme` | `http.server.active_requests`: requests entered and not yet ended (body included) |
//!
//! Labels are bounded: `http_route` is the axum route template or `unmatched` (never the raw
//! path), `http_request_method` one of the nine known methods or `_OTHER`, and
//! `http_response_status_code` a status code. Requests that end without a response (the inner
//! service failed, or the client went away before the response) are not in the histogram; they
//! leave the active gauge all the same.
//!
//! Span export ([`TracingGuard`](crate::TracingGuard)):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_telemetry_spans_exported_total` | counter | none | spans the collector accepted |
//! | `palisade_telemetry_spans_dropped_total` | counter | `reason` = `queue_full` \| `export_failed` | spans lost: the export queue was full, or the export failed |
//! | `palisade_telemetry_span_export_failures_total` | counter | none | failed export calls (each loses one batch) |
//! | `palisade_telemetry_span_queue_size` | gauge | none | spans waiting for export, updated at each export and drop |
//!
//! Histogram and gauge handles are registered with the recorder installed when a layer sees its
//! first request with that label set, so install the recorder (for example
//! [`PrometheusMetrics::install`](crate::PrometheusMetrics::install)) before serving.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::{BuildHasherDefault, Hash, Hasher},
    sync::{Once, OnceLock, RwLock},
};

use metrics::{Gauge, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};

use crate::attributes::METHODS;

/// `http.server.request.duration`, in seconds.
pub const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// `http.server.active_requests`.
pub const ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Spans the collector accepted.
pub const SPANS_EXPORTED: &str = "palisade_telemetry_spans_exported_total";
/// Spans lost, by `reason` (`queue_full`, `export_failed`).
pub const SPANS_DROPPED: &str = "palisade_telemetry_spans_dropped_total";
/// Failed export calls.
pub const EXPORT_FAILURES: &str = "palisade_telemetry_span_export_failures_total";
/// Spans waiting for export.
pub const SPAN_QUEUE: &str = "palisade_telemetry_span_queue_size";

/// The bucket boundaries the semantic conventions give for `http.server.request.duration`.
pub const SEMCONV_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The boundaries used for every other `*_seconds` histogram (bulkhead waits, health check
/// durations): from half a millisecond to a minute.
pub const DEFAULT_SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Label names.
pub(crate) const METHOD_LABEL: &str = "http_request_method";
pub(crate) const ROUTE_LABEL: &str = "http_route";
pub(crate) const STATUS_LABEL: &str = "http_response_status_code";
pub(crate) const SCHEME_LABEL: &str = "url_scheme";

/// Describes every metric of this crate to the installed recorder (HELP lines and units).
/// Layers call it at their first request; [`PrometheusMetrics::install`] calls it at once.
///
/// [`PrometheusMetrics::install`]: crate::PrometheusMetrics::install
pub fn describe() {
    describe_http();
    describe_export();
}

fn describe_http() {
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, until the response body ended \
         (http.server.request.duration)."
    );
    describe_gauge!(
        ACTIVE_REQUESTS,
        Unit::Count,
        "Number of HTTP server requests in flight, response bodies included \
         (http.server.active_requests)."
    );
}

pub(crate) fn describe_export() {
    describe_counter!(
        SPANS_EXPORTED,
        Unit::Count,
        "Spans exported to the OpenTelemetry collector."
    );
    describe_counter!(
        SPANS_DROPPED,
        Unit::Count,
        "Spans lost before reaching the collector, by reason: queue_full (the bounded export \
         queue was full) or export_failed (the export call failed)."
    );
    describe_counter!(
        EXPORT_FAILURES,
        Unit::Count,
        "Failed span export calls to the OpenTelemetry collector."
    );
    describe_gauge!(
        SPAN_QUEUE,
        Unit::Count,
        "Spans waiting in the bounded export queue."
    );
}

/// Status code label values, without allocating for the common ones.
fn status_label(status: u16) -> metrics::SharedString {
    const COMMON: [(u16, &str); 22] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (307, "307"),
        (308, "308"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match COMMON.iter().find(|(code, _)| *code == status) {
        Some((_, text)) => metrics::SharedString::const_str(text),
        None => metrics::SharedString::from(status.to_string()),
    }
}

/// `FxHash` (rustc's hasher): the keys are route templates, methods and status codes chosen by the
/// application, never by clients, so a fast non-keyed hash is safe.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// The cache key, borrowed (lookups) or owned (stored): method index, status, route.
trait KeyView {
    fn parts(&self) -> (u8, u16, &str);
}

#[derive(Debug)]
struct OwnedKey {
    method: u8,
    status: u16,
    route: Box<str>,
}

impl KeyView for OwnedKey {
    fn parts(&self) -> (u8, u16, &str) {
        (self.method, self.status, &self.route)
    }
}

impl KeyView for (u8, u16, &str) {
    fn parts(&self) -> (u8, u16, &str) {
        *self
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (method, status, route) = self.parts();
        state.write_u8(method);
        state.write_u16(status);
        state.write(route.as_bytes());
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Hash for OwnedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn KeyView).hash(state);
    }
}

impl PartialEq for OwnedKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for OwnedKey {}

impl<'a> Borrow<dyn KeyView + 'a> for OwnedKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

/// The most label sets one layer caches; beyond it (only an application with thousands of
/// routes gets there) handles are looked up in the recorder on each request.
const MAX_CACHED: usize = 4096;

/// A layer's metric handles: the recorder lookup (which allocates the label set and hashes it)
/// happens once per label set, then each request is a shared-lock map read and an atomic update.
pub(crate) struct HttpMetrics {
    described: Once,
    /// Per method, per scheme (http, https).
    active: [[OnceLock<Gauge>; 2]; METHODS.len()],
    durations: RwLock<HashMap<OwnedKey, Histogram, BuildHasherDefault<FxHasher>>>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        Self {
            described: Once::new(),
            active: Default::default(),
            durations: RwLock::new(HashMap::default()),
        }
    }

    /// The active-requests gauge of `method` and scheme.
    pub(crate) fn active(&self, method: u8, https: bool) -> &Gauge {
        self.described.call_once(describe_http);
        self.active[usize::from(method)][usize::from(https)].get_or_init(|| {
            metrics::gauge!(
                ACTIVE_REQUESTS,
                METHOD_LABEL => METHODS[usize::from(method)],
                SCHEME_LABEL => if https { "https" } else { "http" }
            )
        })
    }

    /// Records one request duration.
    pub(crate) fn record_duration(&self, method: u8, status: u16, route: &str, seconds: f64) {
        let key: &dyn KeyView = &(method, status, route);
        {
            let map = self
                .durations
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(histogram) = map.get(key) {
                histogram.record(seconds);
                return;
            }
        }
        self.described.call_once(describe_http);
        let histogram = metrics::histogram!(
            REQUEST_DURATION,
            METHOD_LABEL => METHODS[usize::from(method)],
            ROUTE_LABEL => route.to_owned(),
            STATUS_LABEL => status_label(status)
        );
        histogram.record(seconds);
        let mut map = self
            .durations
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() < MAX_CACHED {
            map.insert(
                OwnedKey {
                    method,
                    status,
                    route: route.into(),
                },
                histogram,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_and_owned_keys_agree() {
        let owned = OwnedKey {
            method: 1,
            status: 200,
            route: "/a".into(),
        };
        let hash = |k: &dyn KeyView| {
            let mut h = FxHasher::default();
            k.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&owned), hash(&(1, 200, "/a")));
        assert_ne!(hash(&owned), hash(&(1, 200, "/b")));
        let mut map: HashMap<OwnedKey, u8, BuildHasherDefault<FxHasher>> = HashMap::default();
        map.insert(owned, 7);
        let key: &dyn KeyView = &(1, 200, "/a");
        assert_eq!(map.get(key), Some(&7));
        let other: &dyn KeyView = &(1, 201, "/a");
        assert_eq!(map.get(other), None);
    }

    #[test]
    fn status_labels() {
        assert_eq!(&*status_label(200), "200");
        assert_eq!(&*status_label(418), "418");
    }

    #[test]
    fn semconv_buckets_are_increasing() {
        assert!(SEMCONV_DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(DEFAULT_SECONDS_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
