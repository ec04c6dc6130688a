//! [`Bulkhead`]: the service the layer produces.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::{Priority, ResponseBody};
use tower_service::Service;

use crate::{
    bulkhead::{BulkheadPool, Permit},
    future::ResponseFuture,
};

/// Admits, queues or rejects each request in `call`; see the [crate docs](crate).
pub struct Bulkhead<S> {
    inner: S,
    bulkhead: BulkheadPool,
}

impl<S: Clone> Clone for Bulkhead<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .finish()
    }
}

impl<S> Bulkhead<S> {
    pub(crate) fn new(inner: S, bulkhead: BulkheadPool) -> Self {
        Self { inner, bulkhead }
    }

    palisade_core::inner_service_accessors!();

    /// The bulkhead applied.
    pub fn bulkhead(&self) -> &BulkheadPool {
        &self.bulkhead
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Bulkhead<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody, Permit>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission is decided in `call` (DESIGN.md decision 1).
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Fast path: a free slot and nobody waiting, one compare-and-swap. Kept this small so it
        // inlines into the caller, which then builds the future in place instead of copying the
        // request and the future around.
        match self.bulkhead.try_acquire() {
            Some(permit) => ResponseFuture::running(self.inner.call(request), permit),
            None => self.call_slow(request),
        }
    }
}

impl<S: Clone> Bulkhead<S> {
    /// Every slot is taken, somebody waits, or the bulkhead only observes: queue, reject, or (a
    /// slot freed meanwhile, observe-only) run.
    #[inline(never)]
    fn call_slow<ReqBody>(
        &mut self,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S, Request<ReqBody>>
    where
        S: Service<Request<ReqBody>>,
    {
        let mut acquire = self.bulkhead.acquire(Priority::of(&request));
        match acquire.take_ready() {
            Some(Ok(permit)) => ResponseFuture::running(self.inner.call(request), permit),
            Some(Err(reason)) => ResponseFuture::rejected(self.bulkhead.clone(), reason),
            None => {
                // The request waits: take the service that was polled ready with it, and leave a
                // clone in its place (tower's usual pattern).
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(acquire, self.bulkhead.clone(), service, request)
            }
        }
    }
}
