//! [`AdmitFuture`]: the response future of a layer that admits a request with a guard or refuses
//! it with a ready response.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project::pin_project;

use crate::{ResponseBody, guard::OnBodyEnd};

/// What a refused request is answered with, built only when the response future is polled, so the
/// refusing branch stays small and the admitted path does not move a response around.
pub trait Refusal {
    /// The response.
    fn response<B, G: OnBodyEnd>(self) -> Response<ResponseBody<B, G>>;
}

/// The response future of an admission layer (a limiter, a shedder): the inner future, whose
/// response body then holds the guard `G` until it ends, or a ready refusal `R`.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct AdmitFuture<F, G, R, B> {
    #[pin]
    kind: Kind<F, G, R>,
    body: PhantomData<fn() -> B>,
}

#[pin_project(project = KindProj)]
enum Kind<F, G, R> {
    Admitted {
        #[pin]
        future: F,
        // Dropped with the future if the request is cancelled before a response exists.
        guard: Option<G>,
    },
    Refused {
        refusal: Option<R>,
    },
}

impl<F, G, R, B> AdmitFuture<F, G, R, B> {
    /// `future` runs, and its response body holds `guard` until it ends.
    #[inline]
    pub fn admitted(future: F, guard: G) -> Self {
        Self {
            kind: Kind::Admitted {
                future,
                guard: Some(guard),
            },
            body: PhantomData,
        }
    }

    /// The request is answered with `refusal`.
    pub fn refused(refusal: R) -> Self {
        Self {
            kind: Kind::Refused {
                refusal: Some(refusal),
            },
            body: PhantomData,
        }
    }
}

impl<F, G, R, B, E> Future for AdmitFuture<F, G, R, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    G: OnBodyEnd,
    R: Refusal,
{
    type Output = Result<Response<ResponseBody<B, G>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { future, guard } => {
                let response = ready!(future.poll(cx))?;
                // The guard now lives until the body ends (or is dropped), not until headers.
                Poll::Ready(Ok(match guard.take() {
                    Some(guard) => response.map(|body| ResponseBody::with_guard(body, guard)),
                    None => response.map(ResponseBody::new),
                }))
            }
            KindProj::Refused { refusal } => Poll::Ready(Ok(refuse(refusal))),
        }
    }
}

/// Out of line: the admitted path stays small enough to inline into the caller's poll.
#[inline(never)]
fn refuse<R: Refusal, B, G: OnBodyEnd>(refusal: &mut Option<R>) -> Response<ResponseBody<B, G>> {
    refusal
        .take()
        .expect("AdmitFuture polled after completion")
        .response()
}

impl<F, G, R, B> fmt::Debug for AdmitFuture<F, G, R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Admitted { .. } => "admitted",
            Kind::Refused { .. } => "refused",
        };
        f.debug_struct("AdmitFuture")
            .field("state", &state)
            .finish()
    }
}
