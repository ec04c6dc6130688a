//! The response futures: the inner future with its call guard, a bypass, or a ready rejection.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use palisade_core::ResponseBody;
use pin_project::pin_project;

use crate::{
    breaker::CallGuard,
    classify::Classify,
    error::{BreakerError, Rejected},
};

#[pin_project(project = AdmittedProj)]
struct Admitted<F, C> {
    #[pin]
    future: F,
    // Dropped with the future if the call is cancelled before it completes: counted as ignored.
    guard: Option<CallGuard>,
    classifier: C,
}

impl<F, C> Admitted<F, C> {
    fn new(future: F, guard: CallGuard, classifier: C) -> Self {
        Self {
            future,
            guard: Some(guard),
            classifier,
        }
    }
}

/// Polls the inner future and classifies its result; returns the guard still to be finished
/// (for responses whose body carries it) or `None` once it was finished here.
fn poll_admitted<F, C, R, E>(
    this: AdmittedProj<'_, F, C>,
    cx: &mut Context<'_>,
) -> Poll<(Result<R, E>, CallGuard)>
where
    F: Future<Output = Result<R, E>>,
    C: Classify<R, E>,
{
    let result = ready!(this.future.poll(cx));
    let mut guard = this
        .guard
        .take()
        .expect("circuit breaker future polled after completion");
    guard.set_outcome(this.classifier.classify(&result));
    Poll::Ready((result, guard))
}

/// The response future of the server service [`CircuitBreaker`](crate::CircuitBreaker).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F, B, C> {
    #[pin]
    kind: ServerKind<F, B, C>,
}

#[pin_project(project = ServerKindProj)]
enum ServerKind<F, B, C> {
    Admitted(#[pin] Admitted<F, C>),
    Bypass(#[pin] F),
    Rejected(Option<Response<ResponseBody<B, CallGuard>>>),
}

impl<F, B, C> ResponseFuture<F, B, C> {
    pub(crate) fn admitted(future: F, guard: CallGuard, classifier: C) -> Self {
        Self {
            kind: ServerKind::Admitted(Admitted::new(future, guard, classifier)),
        }
    }

    pub(crate) fn bypass(future: F) -> Self {
        Self {
            kind: ServerKind::Bypass(future),
        }
    }

    pub(crate) fn rejected(response: Response<ResponseBody<B, CallGuard>>) -> Self {
        Self {
            kind: ServerKind::Rejected(Some(response)),
        }
    }
}

impl<F, B, C, E> Future for ResponseFuture<F, B, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
    C: Classify<Response<B>, E>,
{
    type Output = Result<Response<ResponseBody<B, CallGuard>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ServerKindProj::Admitted(admitted) => {
                let (result, guard) = ready!(poll_admitted(admitted.project(), cx));
                Poll::Ready(match result {
                    // The call lasts until the body ends (or fails, or is dropped).
                    Ok(response) => Ok(response.map(|body| ResponseBody::with_guard(body, guard))),
                    Err(error) => {
                        guard.finish_now();
                        Err(error)
                    }
                })
            }
            ServerKindProj::Bypass(future) => {
                Poll::Ready(ready!(future.poll(cx)).map(|r| r.map(ResponseBody::new)))
            }
            ServerKindProj::Rejected(response) => Poll::Ready(Ok(response
                .take()
                .expect("circuit breaker future polled after completion"))),
        }
    }
}

/// The response future of [`CircuitBreakerClient`](crate::CircuitBreakerClient).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ClientFuture<F, C> {
    #[pin]
    kind: ClientKind<F, C>,
}

#[pin_project(project = ClientKindProj)]
enum ClientKind<F, C> {
    Admitted(#[pin] Admitted<F, C>),
    Bypass(#[pin] F),
    Rejected(Option<Rejected>),
}

impl<F, C> ClientFuture<F, C> {
    pub(crate) fn admitted(future: F, guard: CallGuard, classifier: C) -> Self {
        Self {
            kind: ClientKind::Admitted(Admitted::new(future, guard, classifier)),
        }
    }

    pub(crate) fn bypass(future: F) -> Self {
        Self {
            kind: ClientKind::Bypass(future),
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        Self {
            kind: ClientKind::Rejected(Some(rejected)),
        }
    }
}

impl<F, C, R, E> Future for ClientFuture<F, C>
where
    F: Future<Output = Result<R, E>>,
    C: Classify<R, E>,
{
    type Output = Result<R, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ClientKindProj::Admitted(admitted) => {
                let (result, guard) = ready!(poll_admitted(admitted.project(), cx));
                guard.finish_now();
                Poll::Ready(result.map_err(BreakerError::Inner))
            }
            ClientKindProj::Bypass(future) => {
                Poll::Ready(ready!(future.poll(cx)).map_err(BreakerError::Inner))
            }
            ClientKindProj::Rejected(rejected) => Poll::Ready(Err(BreakerError::Rejected(
                rejected
                    .take()
                    .expect("circuit breaker future polled after completion"),
            ))),
        }
    }
}

/// The response future of [`CircuitBreakerHttpClient`](crate::CircuitBreakerHttpClient).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct HttpClientFuture<F, C> {
    #[pin]
    kind: ClientKind<F, C>,
}

impl<F, C> HttpClientFuture<F, C> {
    pub(crate) fn admitted(future: F, guard: CallGuard, classifier: C) -> Self {
        Self {
            kind: ClientKind::Admitted(Admitted::new(future, guard, classifier)),
        }
    }

    pub(crate) fn bypass(future: F) -> Self {
        Self {
            kind: ClientKind::Bypass(future),
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        Self {
            kind: ClientKind::Rejected(Some(rejected)),
        }
    }
}

impl<F, C, B, E> Future for HttpClientFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
    C: Classify<Response<B>, E>,
{
    type Output = Result<Response<ResponseBody<B, CallGuard>>, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ClientKindProj::Admitted(admitted) => {
                let (result, guard) = ready!(poll_admitted(admitted.project(), cx));
                Poll::Ready(match result {
                    Ok(response) => Ok(response.map(|body| ResponseBody::with_guard(body, guard))),
                    Err(error) => {
                        guard.finish_now();
                        Err(BreakerError::Inner(error))
                    }
                })
            }
            ClientKindProj::Bypass(future) => Poll::Ready(
                ready!(future.poll(cx))
                    .map(|r| r.map(ResponseBody::new))
                    .map_err(BreakerError::Inner),
            ),
            ClientKindProj::Rejected(rejected) => Poll::Ready(Err(BreakerError::Rejected(
                rejected
                    .take()
                    .expect("circuit breaker future polled after completion"),
            ))),
        }
    }
}

impl<F, B, C> std::fmt::Debug for ResponseFuture<F, B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C> std::fmt::Debug for ClientFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFuture").finish_non_exhaustive()
    }
}

impl<F, C> std::fmt::Debug for HttpClientFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClientFuture").finish_non_exhaustive()
    }
}
