//! [`ResponseFuture`]: the inner service's future, or a probe's answer.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;
use palisade_core::ResponseBody;
use pin_project::pin_project;

type ProbeFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

/// The response future of [`Health`](crate::Health).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F, B>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Inner {
        #[pin]
        future: F,
        /// Add `Connection: close` (draining).
        close: bool,
    },
    // Boxed so that this rare variant keeps the pass-through future small.
    Answered {
        response: Option<Box<Response<Bytes>>>,
        body: PhantomData<fn() -> B>,
    },
    Probe {
        future: ProbeFuture,
        body: PhantomData<fn() -> B>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(future: F, close: bool) -> Self {
        Self {
            kind: Kind::Inner { future, close },
        }
    }

    pub(crate) fn answered(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Answered {
                response: Some(Box::new(response)),
                body: PhantomData,
            },
        }
    }

    pub(crate) fn probe(future: ProbeFuture) -> Self {
        Self {
            kind: Kind::Probe {
                future,
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
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, close } => {
                let mut response = ready!(future.poll(cx))?;
                // A response that chose its own `Connection` (an upgrade to WebSocket, say) keeps it.
                if *close
                    && response.status() != StatusCode::SWITCHING_PROTOCOLS
                    && !response.headers().contains_key(header::CONNECTION)
                {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Poll::Ready(Ok(response.map(ResponseBody::new)))
            }
            KindProj::Answered { response, .. } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok((*response).map(ResponseBody::fixed)))
            }
            KindProj::Probe { future, .. } => {
                let response = ready!(future.as_mut().poll(cx));
                Poll::Ready(Ok(response.map(ResponseBody::fixed)))
            }
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
