//! [`ResponseFuture`]: the inner service's future with its permit, or a ready rejection.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use palisade_core::ResponseBody;
use pin_project::pin_project;

use crate::limiter::{Limiter, Permit};

/// The response future of [`ConcurrencyLimit`](crate::ConcurrencyLimit).
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F, B>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Admitted {
        #[pin]
        future: F,
        // Dropped with the future if the request is cancelled before a response exists.
        permit: Option<Permit>,
    },
    // The response is built when polled, so this variant stays small and the admitted path does
    // not move a whole response around.
    Rejected {
        limiter: Option<Arc<Limiter>>,
        body: PhantomData<fn() -> B>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn admitted(future: F, permit: Permit) -> Self {
        Self {
            kind: Kind::Admitted {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(limiter: Arc<Limiter>) -> Self {
        Self {
            kind: Kind::Rejected {
                limiter: Some(limiter),
                body: PhantomData,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<B, Permit>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The admitted request first, the rejection out of line: the common path stays small
        // enough to inline into the caller's poll.
        match self.project().kind.project() {
            KindProj::Admitted { future, permit } => {
                let response = ready!(future.poll(cx))?;
                // The permit now lives until the body ends (or is dropped), not until headers.
                Poll::Ready(Ok(match permit.take() {
                    Some(permit) => response.map(|body| ResponseBody::with_guard(body, permit)),
                    None => response.map(ResponseBody::new),
                }))
            }
            KindProj::Rejected { limiter, .. } => Poll::Ready(Ok(Self::rejection(limiter))),
        }
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// The rejection, built only now (see [`Kind::Rejected`]).
    #[inline(never)]
    fn rejection(limiter: &mut Option<Arc<Limiter>>) -> Response<ResponseBody<B, Permit>> {
        limiter
            .take()
            .expect("ResponseFuture polled after completion")
            .rejection()
            .response()
    }
}
