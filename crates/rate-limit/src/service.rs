//! [`RateLimit`]: the service the layer produces.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::ResponseBody;
use tower_service::Service;

use crate::{
    future::{ResponseFuture, Step},
    limiter::{Admission, Limiter},
};

/// Checks each request against its policies in `call`; see the [crate docs](crate).
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, limiter: Arc<Limiter>) -> Self {
        Self { inner, limiter }
    }

    palisade_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission is decided in `call`: axum and hyper would only queue behind `poll_ready`.
        self.inner.poll_ready(cx)
    }

    // Inlined so the caller builds the future in place instead of copying the request and the
    // inner future around; the decision itself (`admit`) stays out of line.
    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.limiter.admit(&mut request) {
            Admission::Admit(fields) => ResponseFuture::admitted(self.inner.call(request), fields),
            Admission::Reject(response) => ResponseFuture::rejected(response),
            Admission::Later(decision, applied) => {
                // The readied service goes with the request; this one is a fresh clone (tower's
                // rule for services called after an asynchronous step).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let limiter = Arc::clone(&self.limiter);
                ResponseFuture::checking(Box::pin(async move {
                    let admission = match decision.await {
                        Ok(decision) => limiter.conclude(applied, decision.states()),
                        Err(error) => limiter.backend_failed(applied, &error),
                    };
                    match admission {
                        Admission::Admit(fields) => Step::Call(inner.call(request), fields),
                        Admission::Reject(response) => Step::Reject(response),
                        // `conclude` never defers.
                        Admission::Later(..) => Step::Call(inner.call(request), None),
                    }
                }))
            }
        }
    }
}
