//! The response future of [`RequestIdService`](crate::RequestIdService).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderName, Response};
use pin_project::pin_project;
use tracing::Span;

use palisade_core::{RequestId, with_current};

/// Polls the inner service inside the request's span and with its
/// [current request id](RequestId::current), then sets the id header on the response: on every
/// response, including rejections produced by layers inside this one.
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    span: Span,
    /// The id; moved into the thread-local slot while the inner future runs.
    id: Option<RequestId>,
    header: Option<HeaderName>,
    /// Enforce mode overwrites a header an inner service set; observe-only only fills it in.
    overwrite: bool,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        span: Span,
        id: Option<RequestId>,
        header: HeaderName,
        overwrite: bool,
    ) -> Self {
        Self {
            inner,
            span,
            id,
            header: Some(header),
            overwrite,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let result = {
            let _entered = this.span.enter();
            ready!(with_current(this.id, || inner.poll(cx)))
        };
        let mut response = result?;
        if let (Some(id), Some(header)) = (this.id.take(), this.header.take()) {
            let headers = response.headers_mut();
            if *this.overwrite || !headers.contains_key(&header) {
                headers.insert(header, id.into_header_value());
            }
        }
        Poll::Ready(Ok(response))
    }
}
