//! The access log: one `tracing` event per request, when its response body ends (or the request
//! ends without one), on its own target so that it can be routed or silenced.

use std::{
    fmt,
    hash::BuildHasher,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use http::{HeaderValue, Request, Uri, header};
use palisade_core::{BodyEnd, ConfigError, RejectionReason, RequestId, RouteLabel, peer_ip};

use crate::attributes::{MAX_RECORDED_LEN, redact_query, truncated};

/// The `tracing` target of access log events: `RUST_LOG=palisade::access=off` silences them.
pub const ACCESS_LOG_TARGET: &str = "palisade::access";

/// How the client address appears in the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum ClientAddress {
    /// The whole address.
    Full,
    /// The network only: IPv4 to its /24 (`203.0.113.0`), IPv6 to its /48. Enough to see which
    /// network a flood comes from, not which subscriber (the default).
    #[default]
    Truncated,
    /// A keyed hash of the address (16 hex digits): one client's lines can be followed, the
    /// address cannot be read back. The key is random per process, so hashes do not match across
    /// restarts or replicas.
    Hashed,
    /// No address.
    Omitted,
}

/// The access log's configuration (`[telemetry.access_log]`).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `enabled` | false | one event per request on the `palisade::access` target, at `info` |
/// | `sample_successes` | 1 | keep 1 in N of the requests that succeeded (status below 400, no Palisade refusal, body completed); every other request is always logged |
/// | `client_address` | `truncated` | `full`, `truncated` (IPv4 /24, IPv6 /48), `hashed` or `omitted` |
///
/// The query string in `path` is redacted with the layer's `redacted_query_keys`, as on spans.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct AccessLogConfig {
    /// Log every request.
    pub enabled: bool,
    /// Keep 1 in this many successful requests (at least 1).
    pub sample_successes: u32,
    /// How the client address is written.
    pub client_address: ClientAddress,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sample_successes: 1,
            client_address: ClientAddress::default(),
        }
    }
}

impl AccessLogConfig {
    /// The access log, on, with the other defaults.
    pub fn on() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    pub(crate) fn compile(&self) -> Result<Option<AccessLog>, ConfigError> {
        if self.sample_successes == 0 {
            return Err(ConfigError::new(
                "access_log.sample_successes",
                "must be at least 1 (1 keeps every request)",
            ));
        }
        Ok(self.enabled.then(|| AccessLog {
            sample_successes: u64::from(self.sample_successes),
            client_address: self.client_address,
            successes: AtomicU64::new(0),
        }))
    }
}

/// The compiled access log of one layer.
#[derive(Debug)]
pub(crate) struct AccessLog {
    sample_successes: u64,
    client_address: ClientAddress,
    /// Successful requests seen, for sampling: the first of every `sample_successes` is kept.
    successes: AtomicU64,
}

impl AccessLog {
    /// Whether a request that ended this way is written.
    fn keeps(&self, status: u16, record: &AccessRecord, end: Option<BodyEnd>) -> bool {
        let succeeded = status != 0
            && status < 400
            && record.outcome.is_none()
            && end == Some(BodyEnd::Completed);
        if !succeeded || self.sample_successes == 1 {
            return true;
        }
        self.successes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.sample_successes)
    }
}

/// One request's access log data, carried to the end of its body.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    start: Instant,
    route: RouteLabel,
    uri: Uri,
    request_id: Option<RequestId>,
    client: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    bytes: u64,
    outcome: Option<RejectionReason>,
    /// The inner service returned an error (as opposed to the request being dropped).
    failed: bool,
}

/// What the telemetry service knows when the request ends.
pub(crate) struct Ending {
    pub(crate) method: &'static str,
    pub(crate) status: u16,
    pub(crate) end: Option<BodyEnd>,
    pub(crate) trace_id: Option<String>,
}

impl AccessRecord {
    /// What the line needs from the request, taken before the request moves on.
    pub(crate) fn new<B>(request: &Request<B>, route: RouteLabel) -> Self {
        Self {
            start: Instant::now(),
            route,
            uri: request.uri().clone(),
            request_id: request.extensions().get::<RequestId>().cloned(),
            client: peer_ip(request.extensions()),
            user_agent: request.headers().get(header::USER_AGENT).cloned(),
            bytes: 0,
            outcome: None,
            failed: false,
        }
    }

    pub(crate) fn on_response<B>(&mut self, response: &http::Response<B>) {
        self.outcome = response.extensions().get::<RejectionReason>().cloned();
    }

    /// The inner service failed: no response.
    pub(crate) fn on_error(&mut self) {
        self.failed = true;
    }

    pub(crate) fn on_data(&mut self, len: usize) {
        self.bytes = self.bytes.saturating_add(len as u64);
    }

    /// Writes the line, unless sampling drops it.
    pub(crate) fn write(self, log: &AccessLog, redacted_query_keys: &[Box<str>], ending: &Ending) {
        // axum replaces a HEAD response's body after this layer, dropping ours unread: that is
        // the response completing, not the client going away.
        let end = match ending.end {
            Some(BodyEnd::Dropped) if ending.method == "HEAD" && self.bytes == 0 => {
                Some(BodyEnd::Completed)
            }
            end => end,
        };
        if !log.keeps(ending.status, &self, end) {
            return;
        }
        let outcome = match (&self.outcome, ending.status) {
            (Some(reason), _) => reason.as_str(),
            (None, 0) if self.failed => "error",
            // No response and no error: the request was dropped, the client went away.
            (None, 0) => "cancelled",
            (None, _) => "served",
        };
        let path = self.uri.path();
        let query = self
            .uri
            .query()
            .map(|q| redact_query(q, redacted_query_keys));
        let client = self.client.map(|ip| Client(ip, log.client_address));
        let user_agent = self
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|ua| truncated(ua, MAX_RECORDED_LEN));
        // Whole microseconds, in milliseconds: `0.302783`, not `0.30278299999999997`.
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        #[allow(clippy::cast_precision_loss)] // exact below 2^52 µs (142 years)
        let duration_ms = micros as f64 / 1000.0;
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = ending.method,
            route = self.route.as_str(),
            path = truncated(path, MAX_RECORDED_LEN),
            query = query.as_deref().map(|q| truncated(q, MAX_RECORDED_LEN)),
            status = ending.status,
            duration_ms,
            bytes_sent = self.bytes,
            request_id = self.request_id.as_ref().map(RequestId::as_str),
            trace_id = ending.trace_id.as_deref(),
            client = client.as_ref().and_then(Client::written).map(tracing::field::display),
            user_agent,
            outcome,
            body = end.map_or("none", BodyEnd::as_str),
            "request"
        );
    }
}

/// A client address as configured to appear.
struct Client(IpAddr, ClientAddress);

impl Client {
    fn written(&self) -> Option<&Self> {
        (self.1 != ClientAddress::Omitted).then_some(self)
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            ClientAddress::Full | ClientAddress::Omitted => write!(f, "{}", self.0),
            ClientAddress::Truncated => write!(f, "{}", truncate_ip(self.0)),
            ClientAddress::Hashed => write!(f, "{:016x}", hash_ip(self.0)),
        }
    }
}

/// The network of `ip`: IPv4 /24, IPv6 /48 (an IPv4-mapped IPv6 address counts as IPv4).
pub(crate) fn truncate_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xFFFF_FF00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
    }
}

/// A keyed hash of `ip` under a random per-process key (SipHash-1-3, the standard library's).
pub(crate) fn hash_ip(ip: IpAddr) -> u64 {
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    KEY.get_or_init(std::hash::RandomState::new)
        .hash_one(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_network_only() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(truncate_ip(v4).to_string(), "203.0.113.0");
        let v6: IpAddr = "2001:db8:abcd:12:34:56:78:9a".parse().unwrap();
        assert_eq!(truncate_ip(v6).to_string(), "2001:db8:abcd::");
        let mapped: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
        assert_eq!(truncate_ip(mapped).to_string(), "198.51.100.0");
    }

    #[test]
    fn hashes_are_stable_in_a_process_and_hide_the_address() {
        let a: IpAddr = "203.0.113.77".parse().unwrap();
        let b: IpAddr = "203.0.113.78".parse().unwrap();
        assert_eq!(hash_ip(a), hash_ip(a));
        assert_ne!(hash_ip(a), hash_ip(b));
        let written = Client(a, ClientAddress::Hashed).to_string();
        assert_eq!(written.len(), 16);
        assert!(!written.contains("203"), "{written}");
        assert!(Client(a, ClientAddress::Omitted).written().is_none());
    }

    #[test]
    fn a_zero_sample_rate_is_refused() {
        let config = AccessLogConfig {
            sample_successes: 0,
            ..AccessLogConfig::on()
        };
        assert_eq!(
            config.compile().unwrap_err().key(),
            "access_log.sample_successes"
        );
    }
}
