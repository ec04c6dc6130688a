//! The client layer: outgoing requests carry the id of the request being handled.

use std::task::{Context, Poll};

use http::{HeaderName, Request};
use tower::{Layer, Service};

use palisade_core::RequestId;

use crate::config::DEFAULT_HEADER;

/// Copies the request id onto outgoing requests of an HTTP client built from tower services
/// (hyper-util's `Client`, a `tower::ServiceBuilder` stack around it, or any
/// `Service<http::Request<B>>`).
///
/// The id comes from, in order:
/// 1. the outgoing request's own extensions (a [`RequestId`] put there by the caller, or present
///    because an incoming request is forwarded as is);
/// 2. the [current request id](RequestId::current): the id of the request whose handler is
///    running, set by [`RequestIdLayer`](crate::RequestIdLayer) while it polls the handler. A
///    handler that calls another service therefore needs no plumbing; work moved to another task
///    keeps the id with [`RequestId::scope`].
///
/// A header the caller already set is left alone, and a request with no id is sent unchanged.
/// Clients that are not tower services (reqwest, for instance) can do the same by hand:
/// `RequestId::current()` and `.header("x-request-id", id.as_str())`.
///
/// ```
/// use http::Request;
/// use palisade_request_id::{ForwardRequestIdLayer, RequestId};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = ForwardRequestIdLayer::new().layer(service_fn(|req: Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.headers()["x-request-id"].clone())
/// }));
///
/// // Inside a handler behind `RequestIdLayer`, the current id is set; here we set it by hand.
/// let id: RequestId = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b".parse().unwrap();
/// let sent = id.scope(client.oneshot(Request::new(()))).await.unwrap();
/// assert_eq!(sent, "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ForwardRequestIdLayer {
    header: HeaderName,
}

impl ForwardRequestIdLayer {
    /// Forwards the id in `x-request-id`.
    pub fn new() -> Self {
        Self {
            header: HeaderName::from_static(DEFAULT_HEADER),
        }
    }

    /// Forwards the id in `header`.
    pub fn with_header(header: HeaderName) -> Self {
        Self { header }
    }

    /// The header the id is sent in.
    pub fn header_name(&self) -> &HeaderName {
        &self.header
    }
}

impl Default for ForwardRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ForwardRequestIdLayer {
    type Service = ForwardRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardRequestId {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The client middleware of [`ForwardRequestIdLayer`].
#[derive(Debug, Clone)]
pub struct ForwardRequestId<S> {
    inner: S,
    header: HeaderName,
}

impl<S> ForwardRequestId<S> {
    palisade_core::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for ForwardRequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !request.headers().contains_key(&self.header) {
            let id = request
                .extensions()
                .get::<RequestId>()
                .cloned()
                .or_else(RequestId::current);
            if let Some(id) = id {
                request
                    .headers_mut()
                    .insert(self.header.clone(), id.into_header_value());
            }
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn echo()
    -> impl Service<Request<()>, Response = Option<String>, Error = Infallible, Future: Send> + Clone
    {
        ForwardRequestIdLayer::new().layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(
                req.headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned()),
            )
        }))
    }

    #[tokio::test]
    async fn no_id_no_header() {
        assert_eq!(echo().oneshot(Request::new(())).await.unwrap(), None);
    }

    #[tokio::test]
    async fn extension_wins_over_current_and_explicit_header_wins_over_both() {
        let current: RequestId = "current".parse().unwrap();
        let mut req = Request::new(());
        req.extensions_mut()
            .insert("ext".parse::<RequestId>().unwrap());
        let sent = current.clone().scope(echo().oneshot(req)).await.unwrap();
        assert_eq!(sent.as_deref(), Some("ext"));

        let req = Request::builder()
            .header("x-request-id", "mine")
            .body(())
            .unwrap();
        let sent = current.clone().scope(echo().oneshot(req)).await.unwrap();
        assert_eq!(sent.as_deref(), Some("mine"));

        let sent = current
            .scope(echo().oneshot(Request::new(())))
            .await
            .unwrap();
        assert_eq!(sent.as_deref(), Some("current"));
    }
}
