//! [`ResponseFuture`]: the inner service's future, or a ready refusal.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use palisade_core::ResponseBody;
use pin_project::pin_project;

use crate::guard::{Guard, Refusal};

/// The response future of [`RequestGuard`](crate::RequestGuard).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F, B>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Passed {
        #[pin]
        future: F,
    },
    // The response is built when polled, so this variant stays small and a passed request does
    // not carry a whole response around.
    Refused {
        refusal: Option<(Arc<Guard>, Refusal)>,
        body: PhantomData<fn() -> B>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn passed(future: F) -> Self {
        Self {
            kind: Kind::Passed { future },
        }
    }

    pub(crate) fn refused(guard: Arc<Guard>, refusal: Refusal) -> Self {
        Self {
            kind: Kind::Refused {
                refusal: Some((guard, refusal)),
                body: PhantomData,
            },
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.kind {
            Kind::Passed { .. } => "passed",
            Kind::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passed { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::new)))
            }
            KindProj::Refused { refusal, .. } => Poll::Ready(Ok(Self::refusal(refusal))),
        }
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline(never)]
    fn refusal(refusal: &mut Option<(Arc<Guard>, Refusal)>) -> Response<ResponseBody<B>> {
        let (guard, refusal) = refusal
            .take()
            .expect("ResponseFuture polled after completion");
        guard.response(refusal)
    }
}
