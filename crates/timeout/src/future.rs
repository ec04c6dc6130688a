//! [`ResponseFuture`]: the inner service's future, raced against the timeout only once it waits.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::Response;
use palisade_core::ResponseBody;
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use crate::deadline::Deadline;

/// The response future of [`Timeout`](crate::Timeout).
///
/// It polls the inner future first and arms a timer only when that future is not ready: a
/// request answered in its first poll (most requests of a healthy service) costs a clock read,
/// with no timer registered, no allocation and nothing for the runtime's timer wheel to remove.
/// Once armed, the timer fires at the deadline taken in `call`, as if it had been armed there.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    deadline: Arc<Deadline>,
    state: State,
}

enum State {
    /// Not waited yet: the time of `call`.
    Unarmed { called: Instant },
    /// Waiting, with the timer armed for the deadline. Boxed so that the future stays small on
    /// the path that never arms it.
    Armed(Pin<Box<Sleep>>),
    /// Observe-only: the deadline passed and was reported; the request runs on, untimed.
    Overran,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, deadline: Arc<Deadline>, called: Instant) -> Self {
        Self {
            inner,
            deadline,
            state: State::Unarmed { called },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner future first: a response that is ready wins over a deadline that passed in
        // the same instant, and a request answered in this poll never arms a timer.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|response| response.map(ResponseBody::new)));
        }
        if let State::Unarmed { called } = *this.state {
            // `timeout` is at most a day (validated), so the sum cannot overflow.
            let at = called + this.deadline.config.timeout;
            *this.state = State::Armed(Box::pin(tokio::time::sleep_until(at)));
        }
        let State::Armed(sleep) = this.state else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(answer) = this.deadline.expired() {
            return Poll::Ready(Ok(answer));
        }
        *this.state = State::Overran;
        Poll::Pending
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Unarmed { .. } => "unarmed",
            State::Armed(_) => "armed",
            State::Overran => "overran",
        };
        f.debug_struct("ResponseFuture")
            .field("timeout", &self.deadline.config.timeout)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        future::{Future, poll_fn},
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use http::Response;

    use super::*;
    use crate::config::TimeoutConfig;

    fn deadline() -> Arc<Deadline> {
        Arc::new(Deadline::new(TimeoutConfig::default()).unwrap())
    }

    fn state<F>(future: &ResponseFuture<F>) -> String {
        format!("{future:?}")
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_answered_in_its_first_poll_arms_no_timer() {
        let ready = std::future::ready(Ok::<_, Infallible>(Response::new(())));
        let mut future = pin!(ResponseFuture::new(ready, deadline(), Instant::now()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_ready());
        assert!(state(&future).contains("unarmed"), "{}", state(&future));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_waits_arms_its_timer() {
        let mut polled = false;
        let waits_once = poll_fn(move |_| {
            if polled {
                Poll::Ready(Ok::<_, Infallible>(Response::new(())))
            } else {
                polled = true;
                Poll::Pending
            }
        });
        let mut future = pin!(ResponseFuture::new(waits_once, deadline(), Instant::now()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert!(state(&future).contains("\"armed\""), "{}", state(&future));
        assert!(future.as_mut().poll(&mut cx).is_ready());
    }
}
