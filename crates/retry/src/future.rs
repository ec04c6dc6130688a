//! [`ResponseFuture`]: the future of a retried call.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use crate::error::RetryError;

/// The response future of [`Retry`](crate::Retry).
///
/// The attempts, sleeps and the hedge race are one `async` state machine, boxed: one allocation
/// per call, which is nothing beside the network round trip it wraps, and it keeps the type
/// nameable. Dropping it cancels the attempt in flight.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<T, E> {
    inner: Pin<Box<dyn Future<Output = Result<T, RetryError<E>>> + Send>>,
}

impl<T, E> ResponseFuture<T, E> {
    pub(crate) fn new(
        inner: Pin<Box<dyn Future<Output = Result<T, RetryError<E>>> + Send>>,
    ) -> Self {
        Self { inner }
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, RetryError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
