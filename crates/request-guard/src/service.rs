//! [`RequestGuard`]: the service the layer produces.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::{NoGuard, ResponseBody};
use tower_service::Service;

use crate::{
    future::{Refused, ResponseFuture},
    guard::Guard,
};

/// Checks each request's method and target in `call`; see the [crate docs](crate).
pub struct RequestGuard<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S: Clone> Clone for RequestGuard<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            guard: Arc::clone(&self.guard),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for RequestGuard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RequestGuard<S> {
    pub(crate) fn new(inner: S, guard: Arc<Guard>) -> Self {
        Self { inner, guard }
    }

    palisade_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The decision is taken in `call`, from the request; readiness is the inner service's.
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Fast path: one scan of the target's bytes, no allocation, then the inner call. The
        // refusal (metrics, log, response) is out of line so this stays small enough to inline.
        let uri = request.uri();
        let checked = self.guard.policy.inspect(
            request.method(),
            uri.path().as_bytes(),
            uri.query().map(str::as_bytes),
        );
        if let Err(finding) = checked
            && let Some(refusal) =
                self.guard
                    .refuse(finding, request.method(), uri, request.extensions())
        {
            return ResponseFuture::refused(Refused {
                guard: Arc::clone(&self.guard),
                refusal,
            });
        }
        ResponseFuture::admitted(self.inner.call(request), NoGuard)
    }
}
