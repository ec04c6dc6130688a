//! The response future: applies the policy to the response headers, nothing else.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project::pin_project;

use crate::policy::Policy;

/// The future of [`SecurityHeaders`](crate::SecurityHeaders): the inner future, then the policy
/// applied to the response's headers. The body is returned unchanged.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    policy: Arc<Policy>,
    https: bool,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, policy: Arc<Policy>, https: bool) -> Self {
        Self {
            inner,
            policy,
            https,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        this.policy.apply(response.headers_mut(), *this.https);
        Poll::Ready(Ok(response))
    }
}
