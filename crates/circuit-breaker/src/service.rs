//! The services the layers make: [`CircuitBreaker`] (servers: 503 + `Retry-After`),
//! [`CircuitBreakerClient`] (any tower service: typed errors) and [`CircuitBreakerHttpClient`]
//! (HTTP clients: typed errors, calls timed until the body ends).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::ResponseBody;
use tower_service::Service;

use crate::{
    breaker::CallGuard,
    classify::{Classify, HttpClassifier},
    error::BreakerError,
    future::{ClientFuture, HttpClientFuture, ResponseFuture},
    layer::Shared,
    scope::{Global, ScopeKey, Selector},
};

macro_rules! service_boilerplate {
    ($name:ident) => {
        impl<S: Clone, C, K> Clone for $name<S, C, K> {
            fn clone(&self) -> Self {
                Self {
                    inner: self.inner.clone(),
                    shared: Arc::clone(&self.shared),
                    selector: self.selector.clone(),
                }
            }
        }

        impl<S: std::fmt::Debug, C, K> std::fmt::Debug for $name<S, C, K> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("inner", &self.inner)
                    .finish_non_exhaustive()
            }
        }

        impl<S, C, K> $name<S, C, K> {
            pub(crate) fn new(inner: S, shared: Arc<Shared<C, K>>, selector: Selector) -> Self {
                Self {
                    inner,
                    shared,
                    selector,
                }
            }

            palisade_core::inner_service_accessors!();
        }
    };
}

/// Admits or rejects each request in `call` (never in `poll_ready`); see
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
pub struct CircuitBreaker<S, C = HttpClassifier, K = Global> {
    inner: S,
    shared: Arc<Shared<C, K>>,
    selector: Selector,
}

service_boilerplate!(CircuitBreaker);

impl<S, C, K, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, C, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    C: Classify<Response<ResBody>, S::Error> + Clone,
    K: ScopeKey<Request<ReqBody>>,
{
    type Response = Response<ResponseBody<ResBody, CallGuard>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission is decided in `call`: axum and hyper do not turn `poll_ready` backpressure
        // into a response.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(breaker) = self.selector.select(&self.shared.scope, &request) else {
            return ResponseFuture::bypass(self.inner.call(request));
        };
        match breaker.acquire_guard() {
            Ok(guard) => ResponseFuture::admitted(
                self.inner.call(request),
                guard,
                self.shared.classifier.clone(),
            ),
            Err(refusal) => {
                ResponseFuture::rejected(self.shared.rejection.response_retry_in(refusal.retry_in))
            }
        }
    }
}

/// A breaker around any tower service; see
/// [`CircuitBreakerLayer::client`](crate::CircuitBreakerLayer::client).
pub struct CircuitBreakerClient<S, C = HttpClassifier, K = Global> {
    inner: S,
    shared: Arc<Shared<C, K>>,
    selector: Selector,
}

service_boilerplate!(CircuitBreakerClient);

impl<S, C, K, Req> Service<Req> for CircuitBreakerClient<S, C, K>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
    K: ScopeKey<Req>,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = ClientFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let Some(breaker) = self.selector.select(&self.shared.scope, &request) else {
            return ClientFuture::bypass(self.inner.call(request));
        };
        match breaker.acquire_guard() {
            Ok(guard) => ClientFuture::admitted(
                self.inner.call(request),
                guard,
                self.shared.classifier.clone(),
            ),
            Err(refusal) => ClientFuture::rejected(breaker.inner.rejected(refusal)),
        }
    }
}

/// A breaker around an HTTP client; see
/// [`CircuitBreakerLayer::http_client`](crate::CircuitBreakerLayer::http_client).
pub struct CircuitBreakerHttpClient<S, C = HttpClassifier, K = Global> {
    inner: S,
    shared: Arc<Shared<C, K>>,
    selector: Selector,
}

service_boilerplate!(CircuitBreakerHttpClient);

impl<S, C, K, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreakerHttpClient<S, C, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    C: Classify<Response<ResBody>, S::Error> + Clone,
    K: ScopeKey<Request<ReqBody>>,
{
    type Response = Response<ResponseBody<ResBody, CallGuard>>;
    type Error = BreakerError<S::Error>;
    type Future = HttpClientFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(breaker) = self.selector.select(&self.shared.scope, &request) else {
            return HttpClientFuture::bypass(self.inner.call(request));
        };
        match breaker.acquire_guard() {
            Ok(guard) => HttpClientFuture::admitted(
                self.inner.call(request),
                guard,
                self.shared.classifier.clone(),
            ),
            Err(refusal) => HttpClientFuture::rejected(breaker.inner.rejected(refusal)),
        }
    }
}
