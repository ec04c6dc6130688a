//! The request id value, its extractor, and the "current request id" of the running request.

use std::{
    cell::Cell,
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    str::FromStr,
    task::{Context, Poll},
};

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, request::Parts};
use pin_project::pin_project;

/// The id of one request.
///
/// `palisade-request-id`'s `RequestIdLayer` puts one in the request extensions of every request,
/// so handlers take it as an extractor and other layers read it with
/// `request.extensions().get::<RequestId>()`. While the layer polls the request, the id is also
/// the [current request id](RequestId::current), which
/// its `ForwardRequestIdLayer` copies onto outgoing requests.
///
/// Cheap to clone: a reference-counted header value, never a string copy. Always non-empty
/// visible ASCII (`!` to `~`) of at most 1024 bytes, so it is safe in a header and a log line;
/// the layer further restricts incoming ids to its configured charset and length.
///
/// ```
/// use palisade_core::RequestId;
///
/// let id: RequestId = "req-42".parse().unwrap();
/// assert_eq!(id.as_str(), "req-42");
/// assert_eq!(id, "req-42");
/// assert!("two words".parse::<RequestId>().is_err());
///
/// let uuid = uuid::Uuid::nil();
/// assert_eq!(RequestId::from(uuid).as_str(), "00000000-0000-0000-0000-000000000000");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

/// A value that cannot be a [`RequestId`]: empty, longer than 1024 bytes, or not visible ASCII.
/// The offending value is deliberately not kept (it may be hostile); only its length is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidRequestId {
    length: usize,
}

impl InvalidRequestId {
    /// The length in bytes of the rejected value.
    pub fn length(&self) -> usize {
        self.length
    }
}

impl fmt::Display for InvalidRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid request id ({} bytes): must be 1 to {} visible ASCII characters",
            self.length,
            RequestId::MAX_LEN
        )
    }
}

impl std::error::Error for InvalidRequestId {}

fn is_visible_ascii(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= RequestId::MAX_LEN
        && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

impl RequestId {
    /// The longest id: ids are copied into every log line, and a kilobyte is already generous.
    pub const MAX_LEN: usize = 1024;

    /// An id from `value`.
    ///
    /// # Errors
    ///
    /// [`InvalidRequestId`] when `value` is empty, longer than 1024 bytes, or contains anything
    /// but visible ASCII.
    pub fn new(value: &str) -> Result<Self, InvalidRequestId> {
        Self::from_bytes(value.as_bytes())
    }

    /// An id from raw bytes, with the same rules as [`RequestId::new`].
    ///
    /// # Errors
    ///
    /// [`InvalidRequestId`], as for [`RequestId::new`].
    pub fn from_bytes(value: &[u8]) -> Result<Self, InvalidRequestId> {
        if !is_visible_ascii(value) {
            return Err(InvalidRequestId {
                length: value.len(),
            });
        }
        HeaderValue::from_bytes(value)
            .map(Self)
            .map_err(|_| InvalidRequestId {
                length: value.len(),
            })
    }

    /// An id that reuses `value` (no copy), with the same rules as [`RequestId::new`].
    ///
    /// # Errors
    ///
    /// [`InvalidRequestId`], as for [`RequestId::new`].
    pub fn from_header_value(value: HeaderValue) -> Result<Self, InvalidRequestId> {
        if is_visible_ascii(value.as_bytes()) {
            Ok(Self(value))
        } else {
            Err(InvalidRequestId {
                length: value.len(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Always visible ASCII (checked on construction), so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as a header value, without a copy.
    pub fn into_header_value(self) -> HeaderValue {
        self.0
    }

    /// The id of the request being handled on this task, if any.
    ///
    /// `palisade-request-id`'s `RequestIdLayer` sets it while it polls the inner service (the
    /// handler, and every layer inside it), the way `tracing` enters a span: it is a per-task
    /// value, swapped in and out on each poll, with no lock and no allocation. Code that runs
    /// on another task (`tokio::spawn`) does not inherit it; carry it over with
    /// [`RequestId::scope`].
    ///
    /// ```
    /// use palisade_core::RequestId;
    ///
    /// assert_eq!(RequestId::current(), None);
    /// let id: RequestId = "abc".parse().unwrap();
    /// id.clone().sync_scope(|| assert_eq!(RequestId::current(), Some(id)));
    /// assert_eq!(RequestId::current(), None);
    /// ```
    pub fn current() -> Option<Self> {
        CURRENT
            .try_with(|slot| {
                let id = slot.take();
                let copy = id.clone();
                slot.set(id);
                copy
            })
            .ok()
            .flatten()
    }

    /// Runs `future` with this id as the [current request id](RequestId::current), for work the
    /// handler moves to another task:
    ///
    /// ```
    /// use palisade_core::RequestId;
    ///
    /// async fn handler(id: RequestId) {
    ///     tokio::spawn(id.scope(async {
    ///         // Outgoing calls made here carry the request's id.
    ///         assert!(RequestId::current().is_some());
    ///     }));
    /// }
    /// ```
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            inner: future,
            id: Some(self),
        }
    }

    /// Runs `f` with this id as the [current request id](RequestId::current).
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let mut slot = Some(self);
        with_current(&mut slot, f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

impl FromStr for RequestId {
    type Err = InvalidRequestId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<HeaderValue> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(value: HeaderValue) -> Result<Self, Self::Error> {
        Self::from_header_value(value)
    }
}

impl From<uuid::Uuid> for RequestId {
    /// The lower-case hyphenated form, `0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b`.
    fn from(uuid: uuid::Uuid) -> Self {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut buf);
        // One allocation holding the text; the request header, the extension and the response
        // header then share it by reference count. Hex digits and '-' only: always valid.
        Self(
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
                .unwrap_or(HeaderValue::from_static("-")),
        )
    }
}

impl From<RequestId> for HeaderValue {
    fn from(id: RequestId) -> Self {
        id.0
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for RequestId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The rejection of the [`RequestId`] extractor when the request has no id: the handler is not
/// behind `palisade-request-id`'s `RequestIdLayer`, a wiring mistake. Answers
/// `500 Internal Server Error`. Take `Option<RequestId>` to make the id optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissingRequestId;

impl fmt::Display for MissingRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "missing request id: the route is not behind palisade_request_id::RequestIdLayer",
        )
    }
}

impl std::error::Error for MissingRequestId {}

impl IntoResponse for MissingRequestId {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// The request's id, as an axum extractor.
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade_core::RequestId;
///
/// async fn handler(id: RequestId) -> String {
///     format!("your request id is {id}")
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     // `.layer(palisade_request_id::RequestIdLayer::new())` puts the id there.
///     ;
/// ```
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = MissingRequestId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or(MissingRequestId)
    }
}

/// `Option<RequestId>`: the id when the route is behind the layer, `None` otherwise.
impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<RequestId>().cloned())
    }
}

thread_local! {
    /// The current request id of the task being polled on this thread.
    static CURRENT: Cell<Option<RequestId>> = const { Cell::new(None) };
}

/// Puts the id in `slot` back where it came from when dropped, even on a panic.
struct Restore<'a> {
    slot: &'a mut Option<RequestId>,
    previous: Option<RequestId>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        if let Ok(ours) = CURRENT.try_with(|current| current.replace(previous)) {
            *self.slot = ours;
        }
    }
}

/// Runs `f` with the id in `slot` (moved, not cloned) as the [current request id](RequestId::current),
/// and moves it back into `slot` afterwards, even on a panic: how a layer polls its inner future
/// under the request's id without a clone per poll.
pub fn with_current<R>(slot: &mut Option<RequestId>, f: impl FnOnce() -> R) -> R {
    let Ok(previous) = CURRENT.try_with(|current| current.replace(slot.take())) else {
        // The thread is shutting down its thread-locals: run without a current id.
        return f();
    };
    let _restore = Restore { slot, previous };
    f()
}

/// A future that runs with a [current request id](RequestId::current); see
/// [`RequestId::scope`].
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    #[pin]
    inner: F,
    id: Option<RequestId>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        with_current(this.id, || inner.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_rules() {
        assert!(RequestId::new("a").is_ok());
        assert!(RequestId::new("!~").is_ok());
        assert!(RequestId::new("").is_err());
        assert!(RequestId::new("a b").is_err());
        assert!(RequestId::new("a\tb").is_err());
        assert!(RequestId::new("é").is_err());
        assert!(RequestId::new(&"a".repeat(RequestId::MAX_LEN)).is_ok());
        let err = RequestId::new(&"a".repeat(RequestId::MAX_LEN + 1)).unwrap_err();
        assert_eq!(err.length(), RequestId::MAX_LEN + 1);
        assert!(RequestId::from_header_value(HeaderValue::from_static("x y")).is_err());
        assert!(RequestId::from_bytes(&[0x80]).is_err());
    }

    #[test]
    fn current_is_scoped_and_nested() {
        let a: RequestId = "a".parse().unwrap();
        let b: RequestId = "b".parse().unwrap();
        assert_eq!(RequestId::current(), None);
        a.clone().sync_scope(|| {
            assert_eq!(RequestId::current().unwrap(), "a");
            b.sync_scope(|| assert_eq!(RequestId::current().unwrap(), "b"));
            assert_eq!(RequestId::current().unwrap(), "a");
        });
        assert_eq!(RequestId::current(), None);
    }

    #[test]
    fn current_is_restored_after_a_panic() {
        let a: RequestId = "a".parse().unwrap();
        let caught = std::panic::catch_unwind(|| a.sync_scope(|| panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(RequestId::current(), None);
    }

    #[test]
    fn slot_gets_its_id_back() {
        let mut slot = Some("a".parse::<RequestId>().unwrap());
        with_current(&mut slot, || assert!(RequestId::current().is_some()));
        assert_eq!(slot.unwrap(), "a");
    }

    #[tokio::test]
    async fn scoped_futures_see_their_id_on_every_poll() {
        let id: RequestId = "scoped".parse().unwrap();
        let seen = id
            .scope(async {
                let before = RequestId::current();
                tokio::task::yield_now().await;
                (before, RequestId::current())
            })
            .await;
        assert_eq!(seen.0.unwrap(), "scoped");
        assert_eq!(seen.1.unwrap(), "scoped");
        assert_eq!(RequestId::current(), None);
    }
}
