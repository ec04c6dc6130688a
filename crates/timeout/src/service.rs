//! [`Timeout`]: the service the layer produces.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use palisade_core::ResponseBody;
use tokio::time::Instant;
use tower_service::Service;

use crate::{deadline::Deadline, future::ResponseFuture};

/// Answers a request whose response has not started within the timeout; see the
/// [crate docs](crate).
pub struct Timeout<S> {
    inner: S,
    deadline: Arc<Deadline>,
}

impl<S: Clone> Clone for Timeout<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            deadline: Arc::clone(&self.deadline),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Timeout<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("timeout", &self.deadline.config.timeout)
            .finish_non_exhaustive()
    }
}

impl<S> Timeout<S> {
    pub(crate) fn new(inner: S, deadline: Arc<Deadline>) -> Self {
        Self { inner, deadline }
    }

    palisade_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The clock starts in `call`; waiting for readiness is not the request's time.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        self.deadline.check_timer_driver();
        // The deadline counts from here, whether or not the timer is ever armed.
        let called = Instant::now();
        ResponseFuture::new(self.inner.call(request), Arc::clone(&self.deadline), called)
    }
}
