//! Rejections as HTTP responses (DESIGN.md decision 2): status, `Retry-After`, and an RFC 9457
//! `application/problem+json` body, all prepared once when a layer is built.

use std::{borrow::Cow, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::{body::ResponseBody, config::ConfigError, guard::OnBodyEnd};

/// The media type of RFC 9457 problem details.
const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
/// Rejections describe a moment; no cache may replay them.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// `Retry-After` in whole seconds as RFC 9110 requires: rounded up, and at least 1 so that a client
/// never reads "retry immediately" from a sub-second wait. Saturates instead of overflowing.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(palisade_core::retry_after_seconds(Duration::ZERO), 1);
/// assert_eq!(palisade_core::retry_after_seconds(Duration::from_millis(1001)), 2);
/// assert_eq!(palisade_core::retry_after_seconds(Duration::from_secs(5)), 5);
/// ```
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    let rounded = if wait.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    rounded.max(1)
}

/// How long a rejected client should wait: a base delay plus an optional random jitter, so that
/// rejected clients do not all come back in the same second.
///
/// Defaults: no jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    base: Duration,
    jitter: Duration,
}

impl RetryAfter {
    /// A fixed delay of `base`.
    pub const fn new(base: Duration) -> Self {
        Self {
            base,
            jitter: Duration::ZERO,
        }
    }

    /// Adds up to `jitter` of uniformly random extra delay to every answer.
    #[must_use]
    pub const fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// The longest `Retry-After` a layer may be configured with: a day.
    pub const MAX: Duration = Duration::from_secs(86_400);

    /// The policy of a layer's `retry_after` and `retry_after_jitter` settings, checked: each at
    /// most [`RetryAfter::MAX`]. Every refusing layer reads these two keys through this function,
    /// so they mean and validate the same everywhere.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_core::RetryAfter;
    ///
    /// let policy = RetryAfter::checked(Duration::from_secs(5), Duration::from_secs(2)).unwrap();
    /// assert_eq!(policy.base(), Duration::from_secs(5));
    /// let err = RetryAfter::checked(Duration::from_secs(100_000), Duration::ZERO).unwrap_err();
    /// assert_eq!(err.key(), "retry_after");
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the key `retry_after` or `retry_after_jitter` when it exceeds a day.
    pub fn checked(base: Duration, jitter: Duration) -> Result<Self, ConfigError> {
        if base > Self::MAX {
            return Err(ConfigError::new("retry_after", "must be at most one day"));
        }
        if jitter > Self::MAX {
            return Err(ConfigError::new(
                "retry_after_jitter",
                "must be at most one day",
            ));
        }
        Ok(Self::new(base).with_jitter(jitter))
    }

    /// The base delay.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The largest random extra delay.
    pub const fn jitter(&self) -> Duration {
        self.jitter
    }

    /// The delay in whole seconds, with `unit` in `[0, 1)` choosing the jitter (0 = none). Exposed so
    /// that tests and callers with their own random source are deterministic.
    pub fn seconds_with(&self, unit: f64) -> u64 {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        retry_after_seconds(self.base.saturating_add(self.jitter.mul_f64(unit)))
    }

    /// The delay in whole seconds, jittered with a fast thread-local random source.
    pub fn seconds(&self) -> u64 {
        if self.jitter.is_zero() {
            self.seconds_with(0.0)
        } else {
            self.seconds_with(fastrand::f64())
        }
    }
}

/// A prepared rejection response: status, `Retry-After` policy and problem+json body, all built
/// and validated once. Producing a response costs a reference-count increment and a header
/// insert, so overload answers stay fast.
///
/// The body is an RFC 9457 problem document:
///
/// ```json
/// {"type":"urn:palisade:problem:concurrency_limit","title":"Service Unavailable",
///  "status":503,"detail":"...","reason":"concurrency_limit"}
/// ```
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use palisade_core::{NoGuard, Rejection, ResponseBody, RetryAfter};
///
/// let rejection = Rejection::builder(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
///     .title("Too Many Requests")
///     .detail("Slow down.")
///     .extension("limit", 100)
///     .retry_after(RetryAfter::new(Duration::from_secs(1)))
///     .build()
///     .unwrap();
/// let response = rejection.response::<axum::body::Body, NoGuard>();
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// assert_eq!(response.headers()["retry-after"], "1");
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    status: StatusCode,
    reason: Cow<'static, str>,
    retry_after: Option<RetryAfter>,
    body: Bytes,
}

impl Rejection {
    /// Starts a rejection with `status` (4xx or 5xx) and a machine-readable `reason`
    /// (`[a-z0-9_]+`, for example `concurrency_limit`), which becomes the problem `type`
    /// (`urn:palisade:problem:<reason>`) and a `reason` member.
    pub fn builder(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> RejectionBuilder {
        RejectionBuilder {
            status,
            reason: reason.into(),
            title: None,
            detail: None,
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The `Retry-After` policy, if any.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        self.retry_after
    }

    /// The serialized problem document.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The rejection as a response, with `Retry-After` from the configured policy (if any).
    pub fn response<B, G: OnBodyEnd>(&self) -> Response<ResponseBody<B, G>> {
        self.build_response(self.retry_after.map(|r| r.seconds()))
    }

    /// The rejection as a response whose `Retry-After` is `wait` (rounded up to whole seconds, at
    /// least 1) plus the configured jitter; for rejections that know when things change, such as
    /// an open circuit breaker's remaining open time.
    pub fn response_retry_in<B, G: OnBodyEnd>(
        &self,
        wait: Duration,
    ) -> Response<ResponseBody<B, G>> {
        let policy = RetryAfter::new(wait)
            .with_jitter(self.retry_after.map_or(Duration::ZERO, |r| r.jitter()));
        self.build_response(Some(policy.seconds()))
    }

    fn build_response<B, G: OnBodyEnd>(
        &self,
        retry_secs: Option<u64>,
    ) -> Response<ResponseBody<B, G>> {
        let mut response = Response::new(ResponseBody::fixed(self.body.clone()));
        *response.status_mut() = self.status;
        // Outer layers (an access log) learn which refusal this was without parsing the body.
        response
            .extensions_mut()
            .insert(RejectionReason(self.reason.clone()));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, PROBLEM_JSON);
        headers.insert(header::CACHE_CONTROL, NO_STORE);
        if let Some(secs) = retry_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The reason of a [`Rejection`], in the extensions of every response built from one, so that
/// layers further out (an access log, a metrics layer) can tell a refusal from the application's
/// own 4xx or 5xx and say which layer answered.
///
/// ```
/// use http::StatusCode;
/// use palisade_core::{NoGuard, Rejection, RejectionReason};
///
/// let shed = Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "shed").build().unwrap();
/// let response = shed.response::<axum::body::Body, NoGuard>();
/// assert_eq!(response.extensions().get::<RejectionReason>().unwrap().as_str(), "shed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionReason(Cow<'static, str>);

impl RejectionReason {
    /// The machine-readable reason (`concurrency_limit`, `quota_exceeded`, ...).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Builds a [`Rejection`]; see [`Rejection::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RejectionBuilder {
    status: StatusCode,
    reason: Cow<'static, str>,
    title: Option<Cow<'static, str>>,
    detail: Option<Cow<'static, str>>,
    extensions: serde_json::Map<String, serde_json::Value>,
    retry_after: Option<RetryAfter>,
}

impl RejectionBuilder {
    /// A short human-readable summary. Default: the status's canonical reason ("Service
    /// Unavailable").
    pub fn title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// A human-readable explanation of this occurrence. Default: none.
    pub fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// An extension member of the problem document, such as the bulkhead's name or the priority
    /// class. The standard members (`type`, `title`, `status`, `detail`, `reason`) cannot be
    /// replaced.
    pub fn extension(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.extensions.insert(key.into(), value.into());
        self
    }

    /// Sends `Retry-After` computed by `policy`. Default: no `Retry-After`.
    pub fn retry_after(mut self, policy: RetryAfter) -> Self {
        self.retry_after = Some(policy);
        self
    }

    /// Validates and serializes the rejection.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the status is not a 4xx or 5xx, when the reason is empty, longer than
    /// 64 bytes or not `[a-z0-9_]`, or when an extension tries to replace a standard member.
    pub fn build(self) -> Result<Rejection, ConfigError> {
        if !(self.status.is_client_error() || self.status.is_server_error()) {
            return Err(ConfigError::new(
                "rejection.status",
                "must be a 4xx or 5xx status",
            ));
        }
        let reason_ok = !self.reason.is_empty()
            && self.reason.len() <= 64
            && self
                .reason
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !reason_ok {
            return Err(ConfigError::new(
                "rejection.reason",
                format!("{:?} must be 1 to 64 characters of [a-z0-9_]", self.reason),
            ));
        }
        let mut doc = serde_json::Map::new();
        doc.insert(
            "type".into(),
            format!("urn:palisade:problem:{}", self.reason).into(),
        );
        let title = self.title.unwrap_or(Cow::Borrowed(
            self.status.canonical_reason().unwrap_or("Request Rejected"),
        ));
        doc.insert("title".into(), title.into_owned().into());
        doc.insert("status".into(), self.status.as_u16().into());
        if let Some(detail) = self.detail {
            doc.insert("detail".into(), detail.into_owned().into());
        }
        doc.insert("reason".into(), self.reason.as_ref().into());
        for (key, value) in self.extensions {
            if doc.contains_key(&key) {
                return Err(ConfigError::new(
                    "rejection.extension",
                    format!("{key:?} is a standard problem member and cannot be replaced"),
                ));
            }
            doc.insert(key, value);
        }
        let body = serde_json::to_vec(&serde_json::Value::Object(doc))
            .map_err(|e| ConfigError::new("rejection", e.to_string()))?;
        Ok(Rejection {
            status: self.status,
            reason: self.reason,
            retry_after: self.retry_after,
            body: Bytes::from(body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoGuard;
    use http_body_util::{BodyExt, Full};

    type TestBody = ResponseBody<Full<Bytes>, NoGuard>;

    fn overloaded() -> Rejection {
        Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "concurrency_limit")
            .detail("The server is at its in-flight limit.")
            .extension("limit", 10)
            .retry_after(RetryAfter::new(Duration::from_secs(5)))
            .build()
            .unwrap()
    }

    #[test]
    fn retry_after_rounds_up_with_a_floor_of_one() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_nanos(1_000_000_001)), 2);
        assert_eq!(retry_after_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let policy = RetryAfter::new(Duration::from_secs(5)).with_jitter(Duration::from_secs(3));
        assert_eq!(policy.seconds_with(0.0), 5);
        assert_eq!(policy.seconds_with(0.5), 7); // 6.5 s rounds up
        assert_eq!(policy.seconds_with(1.0), 8);
        assert_eq!(policy.seconds_with(f64::NAN), 5);
        assert_eq!(policy.seconds_with(-4.0), 5);
        for _ in 0..1000 {
            let s = policy.seconds();
            assert!((5..=8).contains(&s), "{s}");
        }
    }

    #[tokio::test]
    async fn response_is_problem_json_with_retry_after() {
        let response: Response<TestBody> = overloaded().response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["type"], "urn:palisade:problem:concurrency_limit");
        assert_eq!(doc["title"], "Service Unavailable");
        assert_eq!(doc["status"], 503);
        assert_eq!(doc["detail"], "The server is at its in-flight limit.");
        assert_eq!(doc["reason"], "concurrency_limit");
        assert_eq!(doc["limit"], 10);
    }

    #[test]
    fn explicit_wait_overrides_the_base_delay() {
        let response: Response<TestBody> =
            overloaded().response_retry_in(Duration::from_millis(12_300));
        assert_eq!(response.headers()[header::RETRY_AFTER], "13");
    }

    #[test]
    fn no_retry_after_unless_configured() {
        let rejection = Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "draining")
            .build()
            .unwrap();
        let response: Response<TestBody> = rejection.response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn detail_text_is_escaped_not_injected() {
        let rejection = Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "x")
            .detail("quote \" and\nnewline </script>")
            .build()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(rejection.body()).unwrap();
        assert_eq!(doc["detail"], "quote \" and\nnewline </script>");
    }

    #[test]
    fn invalid_rejections_are_errors() {
        let ok = |status, reason: &'static str| Rejection::builder(status, reason).build();
        assert!(ok(StatusCode::OK, "fine").is_err());
        assert!(ok(StatusCode::FOUND, "fine").is_err());
        assert!(ok(StatusCode::SERVICE_UNAVAILABLE, "").is_err());
        assert!(ok(StatusCode::SERVICE_UNAVAILABLE, "Has Space").is_err());
        assert!(ok(StatusCode::SERVICE_UNAVAILABLE, "UPPER").is_err());
        let long: &'static str = "a".repeat(65).leak();
        assert!(ok(StatusCode::SERVICE_UNAVAILABLE, long).is_err());
        let err = Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "x")
            .extension("status", 200)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("status"), "{err}");
        assert!(ok(StatusCode::TOO_MANY_REQUESTS, "rate_limited_2").is_ok());
    }
}
