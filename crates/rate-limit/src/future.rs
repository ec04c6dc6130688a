//! [`ResponseFuture`]: the inner service's future (adding the `RateLimit` fields to its
//! response), a ready refusal, or a backend check still under way.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use palisade_core::ResponseBody;
use pin_project::pin_project;

use crate::headers::Fields;

/// The response future of [`RateLimit`](crate::RateLimit).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F, B>,
}

/// The outcome of an asynchronous backend check.
pub(crate) enum Step<F, B> {
    Call(F, Option<Fields>),
    Reject(Box<Response<ResponseBody<B>>>),
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Admitted {
        #[pin]
        future: F,
        fields: Option<Fields>,
    },
    // Boxed: a rejection is the rare path, and an inline response would make every admitted
    // future (moved on each call) as large as a whole response head.
    Rejected {
        response: Option<Box<Response<ResponseBody<B>>>>,
    },
    Checking {
        step: Pin<Box<dyn Future<Output = Step<F, B>> + Send>>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn admitted(future: F, fields: Option<Fields>) -> Self {
        Self {
            kind: Kind::Admitted { future, fields },
        }
    }

    pub(crate) fn rejected(response: Box<Response<ResponseBody<B>>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn checking(step: Pin<Box<dyn Future<Output = Step<F, B>> + Send>>) -> Self {
        Self {
            kind: Kind::Checking { step },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Admitted { .. } => "admitted",
            Kind::Rejected { .. } => "rejected",
            Kind::Checking { .. } => "checking",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Admitted { future, fields } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(fields) = fields.take() {
                        fields.apply(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                KindProj::Rejected { response } => {
                    return Poll::Ready(Ok(*response
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
                KindProj::Checking { step } => {
                    let next = match ready!(step.as_mut().poll(cx)) {
                        Step::Call(future, fields) => Kind::Admitted { future, fields },
                        Step::Reject(response) => Kind::Rejected {
                            response: Some(response),
                        },
                    };
                    kind.set(next);
                }
            }
        }
    }
}
