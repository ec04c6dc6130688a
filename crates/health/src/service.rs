//! [`Health`]: the service the layer produces.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Body;
use palisade_core::ResponseBody;
use tower_service::Service;

use crate::{future::ResponseFuture, state::Shared};

/// Answers probe requests, passes the rest to `S`; see the [crate docs](crate).
///
/// `poll_ready` delegates to `S`, as every Palisade layer does (DESIGN.md decision 1). axum's
/// `Router` and Palisade's limiters are always ready (they decide in `call`), so probes never
/// wait; a limiter that applies backpressure in `poll_ready` (tower's `ConcurrencyLimit`,
/// `Buffer`) would make probes wait behind application requests: put such layers on routes
/// (`Router::route_layer`), not around the whole router inside this layer.
pub struct Health<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Health<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Health<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Health<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    palisade_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Health<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // axum's Router (the usual inner service) is always ready; decisions are taken in `call`.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(probe) = self.shared.paths.classify(request.uri().path()) else {
            // `Connection` is an HTTP/1 header; HTTP/2 forbids it.
            let close = self.shared.close_while_draining
                && self.shared.lifecycle.is_draining()
                && request.version() <= Version::HTTP_11;
            return ResponseFuture::inner(self.inner.call(request), close);
        };
        if !Shared::allows(request.method()) {
            return ResponseFuture::answered(Shared::method_not_allowed());
        }
        self.shared.ensure_background();
        // Answered at once from the caches when no check has to run.
        if let Some(report) = self.shared.report_now(probe) {
            return ResponseFuture::answered(self.shared.respond(&report));
        }
        let shared = Arc::clone(&self.shared);
        ResponseFuture::probe(Box::pin(async move {
            let report = Arc::clone(&shared).report(probe).await;
            shared.respond(&report)
        }))
    }
}
