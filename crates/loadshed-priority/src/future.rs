//! [`ResponseFuture`]: the inner future (running with its class as the task's current priority)
//! with its in-flight guard, or a ready rejection.

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
use palisade_core::{Priority, ResponseBody};
use pin_project::pin_project;
use tokio::task::futures::TaskLocalFuture;

use crate::{layer::Shared, service::InFlight};

/// The response future of [`LoadShed`](crate::LoadShed).
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F, B>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B> {
    Admitted {
        #[pin]
        future: TaskLocalFuture<Priority, F>,
        guard: Option<InFlight>,
    },
    Shed {
        shared: Option<Arc<Shared>>,
        priority: Priority,
        body: PhantomData<fn() -> B>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn admitted(future: TaskLocalFuture<Priority, F>, guard: InFlight) -> Self {
        Self {
            kind: Kind::Admitted {
                future,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn shed(shared: Arc<Shared>, priority: Priority) -> Self {
        Self {
            kind: Kind::Shed {
                shared: Some(shared),
                priority,
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
    type Output = Result<Response<ResponseBody<B, InFlight>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { future, guard } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(match guard.take() {
                    Some(guard) => response.map(|body| ResponseBody::with_guard(body, guard)),
                    None => response.map(ResponseBody::new),
                }))
            }
            KindProj::Shed {
                shared, priority, ..
            } => {
                let shared = shared
                    .take()
                    .expect("ResponseFuture polled after completion");
                // Classes below CriticalPlus are the only ones ever shed.
                let rejection = &shared.rejections[(*priority as usize).min(2)];
                Poll::Ready(Ok(rejection.response()))
            }
        }
    }
}
