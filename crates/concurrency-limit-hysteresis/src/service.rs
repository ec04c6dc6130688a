//! [`ConcurrencyLimit`]: the service the layer produces.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::{Priority, ResponseBody};
use tower_service::Service;

use crate::{
    future::{AtLimit, ResponseFuture},
    limiter::{Limiter, Permit},
};

/// Admits or rejects each request in `call`; see the [crate docs](crate).
pub struct ConcurrencyLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S: Clone> Clone for ConcurrencyLimit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for ConcurrencyLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> ConcurrencyLimit<S> {
    pub(crate) fn new(inner: S, limiter: Arc<Limiter>) -> Self {
        Self { inner, limiter }
    }

    palisade_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ConcurrencyLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody, Permit>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission is decided in `call`: axum and hyper do not turn `poll_ready` backpressure
        // into a response, they would only queue.
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Fast path: accepting and below high water, one compare-and-swap. Kept this small, and
        // with one place that calls the inner service, so it inlines into the caller, which then
        // builds the future in place instead of copying the request and the future around.
        let permit = match self.limiter.try_acquire() {
            Some(permit) => permit,
            None => match self.admit_slow(&request) {
                Some(permit) => permit,
                None => return ResponseFuture::refused(AtLimit(Arc::clone(&self.limiter))),
            },
        };
        ResponseFuture::admitted(self.inner.call(request), permit)
    }
}

impl<S> ConcurrencyLimit<S> {
    /// At the high-water mark or shedding: the full decision, which needs the request's priority
    /// (the critical reserve) and may reject, start or stop shedding.
    #[inline(never)]
    fn admit_slow<ReqBody>(&self, request: &Request<ReqBody>) -> Option<Permit> {
        let critical = Priority::of(request) == Priority::CriticalPlus;
        self.limiter.acquire(critical).ok()
    }
}
