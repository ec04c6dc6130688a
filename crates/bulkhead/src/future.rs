//! [`ResponseFuture`]: waiting for a slot, then the inner service's future with its permit, or a
//! rejection.

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
use tower_service::Service;

use crate::bulkhead::{Acquire, BulkheadPool, Permit, RejectReason};

/// The response future of [`Bulkhead`](crate::Bulkhead).
///
/// Dropping it while it waits for a slot (the client went away) leaves the queue at once.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    #[pin]
    kind: Kind<S, Req, S::Future>,
}

#[pin_project(project = KindProj)]
enum Kind<S, Req, F> {
    // Boxed: only requests that wait pay for it, and the future stays small on the fast path.
    Waiting(Box<Waiting<S, Req>>),
    Running {
        #[pin]
        future: F,
        // Dropped with the future if the request is cancelled before a response exists.
        permit: Option<Permit>,
    },
    Rejected {
        bulkhead: BulkheadPool,
        reason: RejectReason,
    },
}

struct Waiting<S, Req> {
    acquire: Acquire,
    bulkhead: BulkheadPool,
    service: Option<S>,
    request: Option<Req>,
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn running(future: S::Future, permit: Permit) -> Self {
        Self {
            kind: Kind::Running {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(bulkhead: BulkheadPool, reason: RejectReason) -> Self {
        Self {
            kind: Kind::Rejected { bulkhead, reason },
        }
    }

    pub(crate) fn waiting(
        acquire: Acquire,
        bulkhead: BulkheadPool,
        service: S,
        request: Req,
    ) -> Self {
        Self {
            kind: Kind::Waiting(Box::new(Waiting {
                acquire,
                bulkhead,
                service: Some(service),
                request: Some(request),
            })),
        }
    }
}

impl<S, Req, B> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<B, Permit>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            // The running request first, and the rest out of line: the common path stays small
            // enough to inline into the caller's poll.
            if let KindProj::Running { future, permit } = kind.as_mut().project() {
                let response = ready!(future.poll(cx))?;
                // The slot now lives until the body ends (or is dropped), not until headers.
                return Poll::Ready(Ok(match permit.take() {
                    Some(permit) => response.map(|body| ResponseBody::with_guard(body, permit)),
                    None => response.map(ResponseBody::new),
                }));
            }
            if let Some(rejected) = ready!(Self::poll_admission(kind.as_mut(), cx)) {
                return Poll::Ready(Ok(rejected));
            }
        }
    }
}

impl<S, Req, B> ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
    B: Body<Data = Bytes>,
{
    /// Waits for a slot: once granted, the request is running (`None`); else the rejection.
    #[inline(never)]
    fn poll_admission(
        mut kind: Pin<&mut Kind<S, Req, S::Future>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Response<ResponseBody<B, Permit>>>> {
        match kind.as_mut().project() {
            KindProj::Waiting(waiting) => match ready!(Pin::new(&mut waiting.acquire).poll(cx)) {
                Ok(permit) => {
                    let mut service = waiting.service.take().expect("polled after completion");
                    let request = waiting.request.take().expect("polled after completion");
                    let future = service.call(request);
                    kind.set(Kind::Running {
                        future,
                        permit: Some(permit),
                    });
                    Poll::Ready(None)
                }
                Err(reason) => Poll::Ready(Some(waiting.bulkhead.rejection(reason).response())),
            },
            KindProj::Rejected { bulkhead, reason } => {
                Poll::Ready(Some(bulkhead.rejection(*reason).response()))
            }
            KindProj::Running { .. } => unreachable!("a running request is polled in `poll`"),
        }
    }
}

impl<S: Service<Req>, Req> std::fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
