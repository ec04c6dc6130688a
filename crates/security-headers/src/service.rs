//! The service: decides what it needs from the request in `call`, applies the policy when the
//! response arrives.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::Service;

use crate::{future::ResponseFuture, layer::SecurityHeadersLayer, policy::Policy};

/// The service made by [`SecurityHeadersLayer`]: passes the request and the response body through
/// unchanged and adds, replaces or removes response headers as the policy says.
///
/// `poll_ready` delegates to the inner service. Errors of the inner service pass through
/// untouched (they are not responses, so there are no headers to set).
#[derive(Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> SecurityHeaders<S> {
    /// Wraps `inner` with the policy of `layer`.
    pub fn new(inner: S, layer: &SecurityHeadersLayer) -> Self {
        tower::Layer::layer(layer, inner)
    }

    pub(crate) fn from_policy(inner: S, policy: Arc<Policy>) -> Self {
        Self { inner, policy }
    }

    palisade_core::inner_service_accessors!();
}

impl<S: std::fmt::Debug> std::fmt::Debug for SecurityHeaders<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityHeaders")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The only per-request decision: whether HSTS goes out, when it is HTTPS-only.
        let https = self.policy.needs_transport() && self.policy.is_https(&request);
        ResponseFuture::new(self.inner.call(request), self.policy.clone(), https)
    }
}
