//! What may be retried: idempotent requests, retryable statuses, and errors as a closure says.

use std::time::Duration;

use http::{HeaderMap, Method, Response, StatusCode};

use crate::{error::RetryError, retry_after};

/// The request header that makes a non-idempotent request safe to retry: the server promises
/// to apply one key once (draft-ietf-httpapi-idempotency-key-header; Stripe's convention).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a request may be sent more than once: an idempotent method (RFC 9110 §9.2.2: GET,
/// HEAD, PUT, DELETE, OPTIONS, TRACE) or an `Idempotency-Key` header.
///
/// RFC 9112 §9.3.1: a client must not automatically retry a non-idempotent request unless it
/// knows the request is idempotent; a `POST` retried after a 502 can charge a card twice.
///
/// ```
/// use http::{HeaderMap, Method};
/// use palisade_retry::is_idempotent;
///
/// let mut headers = HeaderMap::new();
/// assert!(is_idempotent(&Method::PUT, &headers));
/// assert!(!is_idempotent(&Method::POST, &headers));
/// headers.insert("idempotency-key", "order-42".parse().unwrap());
/// assert!(is_idempotent(&Method::POST, &headers));
/// ```
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// Decides whether a service error is worth retrying.
///
/// The layer's default, [`AllErrors`], treats every error as a transport failure (connection
/// refused, reset, timeout) and retries it. Any `Fn(&E) -> bool` closure works: return `false`
/// for errors that another attempt cannot fix, above all an open circuit breaker, which
/// refuses every attempt until it closes and so must stop the retries at once.
///
/// ```
/// use palisade_circuit_breaker::BreakerError;
/// use palisade_retry::ClassifyError;
///
/// let classify = |error: &BreakerError<std::io::Error>| !error.is_rejected();
/// let io = BreakerError::Inner(std::io::Error::other("connection reset"));
/// assert!(classify.is_retryable(&io));
/// ```
pub trait ClassifyError<E> {
    /// Whether `error` may be retried.
    fn is_retryable(&self, error: &E) -> bool;
}

impl<F, E> ClassifyError<E> for F
where
    F: Fn(&E) -> bool,
{
    fn is_retryable(&self, error: &E) -> bool {
        self(error)
    }
}

/// Every error is retryable (the default): errors of an HTTP client are connection failures,
/// resets and timeouts, which another attempt may not meet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllErrors;

impl<E> ClassifyError<E> for AllErrors {
    fn is_retryable(&self, _: &E) -> bool {
        true
    }
}

/// What one attempt's result calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Done: a success.
    Success,
    /// Done: a failure that another attempt would not change.
    Fatal,
    /// A failure another attempt may fix, after the upstream's `Retry-After` if it sent one.
    Retryable(Option<Duration>),
}

/// The retryable statuses as a bit set over 400..=599: one shift and mask per response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusSet([u64; 4]);

impl StatusSet {
    pub(crate) fn new(statuses: &[u16]) -> Self {
        let mut bits = [0; 4];
        for &s in statuses {
            if let Some(i) = s.checked_sub(400).filter(|i| *i < 200) {
                bits[usize::from(i / 64)] |= 1 << (i % 64);
            }
        }
        Self(bits)
    }

    pub(crate) fn contains(self, status: StatusCode) -> bool {
        status
            .as_u16()
            .checked_sub(400)
            .filter(|i| *i < 200)
            .is_some_and(|i| self.0[usize::from(i / 64)] & (1 << (i % 64)) != 0)
    }
}

/// The verdict on one HTTP attempt.
pub(crate) fn http_verdict<B, E, C: ClassifyError<E>>(
    statuses: StatusSet,
    classify: &C,
    result: &Result<Response<B>, RetryError<E>>,
) -> Verdict {
    match result {
        Ok(response) if statuses.contains(response.status()) => {
            Verdict::Retryable(retry_after::of(response.headers()))
        }
        // 4xx and 5xx that are not listed: the answer would be the same next time.
        Ok(response) if response.status().as_u16() >= 400 => Verdict::Fatal,
        Ok(_) => Verdict::Success,
        Err(RetryError::Inner(error)) if classify.is_retryable(error) => Verdict::Retryable(None),
        Err(RetryError::Inner(_)) => Verdict::Fatal,
        // The attempt may have been slow by bad luck (a cold connection, a GC pause).
        Err(RetryError::AttemptTimeout(_)) => Verdict::Retryable(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods() {
        let none = HeaderMap::new();
        for m in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
            assert!(is_idempotent(&m.parse().unwrap(), &none), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!is_idempotent(&m.parse().unwrap(), &none), "{m}");
        }
    }

    #[test]
    fn status_set() {
        let set = StatusSet::new(&[429, 502, 503, 504, 599, 408]);
        for s in [408, 429, 502, 503, 504, 599] {
            assert!(set.contains(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 301, 400, 404, 416, 500, 501, 505] {
            assert!(!set.contains(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn verdicts() {
        let set = StatusSet::new(&[503]);
        let response = |status: u16, retry_after: Option<&'static str>| {
            let mut r = Response::builder().status(status);
            if let Some(v) = retry_after {
                r = r.header("retry-after", v);
            }
            Ok::<_, RetryError<&str>>(r.body(()).unwrap())
        };
        assert_eq!(
            http_verdict(set, &AllErrors, &response(200, None)),
            Verdict::Success
        );
        assert_eq!(
            http_verdict(set, &AllErrors, &response(404, None)),
            Verdict::Fatal
        );
        assert_eq!(
            http_verdict(set, &AllErrors, &response(500, None)),
            Verdict::Fatal
        );
        assert_eq!(
            http_verdict(set, &AllErrors, &response(503, Some("2"))),
            Verdict::Retryable(Some(Duration::from_secs(2)))
        );
        let err: Result<Response<()>, _> = Err(RetryError::Inner("refused"));
        assert_eq!(
            http_verdict(set, &AllErrors, &err),
            Verdict::Retryable(None)
        );
        let never = |_: &&str| false;
        assert_eq!(http_verdict(set, &never, &err), Verdict::Fatal);
        let timeout: Result<Response<()>, RetryError<&str>> =
            Err(RetryError::AttemptTimeout(Duration::from_secs(1)));
        assert_eq!(
            http_verdict(set, &never, &timeout),
            Verdict::Retryable(None)
        );
    }
}
