//! [`Optional`]: a layer that may be off, without boxing.
//!
//! Why not one `Router::layer` call per layer: axum boxes the route again for each call, so every
//! request pays a clone of each boxed level, a boxed future per level and a boxed body per level
//! (about three allocations per layer; with seven layers that was most of the stack's cost on a
//! hello-world route). The stack is one tower `ServiceBuilder` applied with a single
//! `Router::layer`; layers switched off become [`OptionalService::Off`], and the two response
//! bodies are unified with `http_body_util::Either` instead of a box.
//!
//! A level still costs each request about 200 instructions (a match, a move of the response, a
//! level of `Either` in every body call), so `Stack::apply` uses it only when a layer that is on
//! by default is switched off; otherwise it builds the stack for exactly the layers that are on.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::http::Response;
use http_body_util::Either;
use pin_project::pin_project;
use tower::{Layer, Service};

/// `L`, or nothing: a layer that may be switched off, applied without boxing. Wrap each of
/// [`Layers`](crate::Layers)' fields in it to build the stack your own way.
#[derive(Debug, Clone)]
pub struct Optional<L>(pub Option<L>);

impl<L, S> Layer<S> for Optional<L>
where
    L: Layer<S>,
{
    type Service = OptionalService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => OptionalService::On(layer.layer(inner)),
            None => OptionalService::Off(inner),
        }
    }
}

/// The layer's service, or the inner service alone.
#[derive(Debug, Clone)]
pub enum OptionalService<A, S> {
    /// The layer is on: its service.
    On(A),
    /// The layer is off: the inner service alone.
    Off(S),
}

impl<A, S, Request, BodyA, BodyS> Service<Request> for OptionalService<A, S>
where
    A: Service<Request, Response = Response<BodyA>, Error = Infallible>,
    S: Service<Request, Response = Response<BodyS>, Error = Infallible>,
{
    type Response = Response<Either<BodyA, BodyS>>;
    type Error = Infallible;
    type Future = OptionalFuture<A::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            Self::On(service) => service.poll_ready(cx),
            Self::Off(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self {
            Self::On(service) => OptionalFuture::On(service.call(request)),
            Self::Off(service) => OptionalFuture::Off(service.call(request)),
        }
    }
}

/// The future of whichever service answered.
#[pin_project(project = OptionalProj)]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub enum OptionalFuture<FA, FS> {
    /// The layer's service's future.
    On(#[pin] FA),
    /// The inner service's future.
    Off(#[pin] FS),
}

impl<FA, FS, BodyA, BodyS> Future for OptionalFuture<FA, FS>
where
    FA: Future<Output = Result<Response<BodyA>, Infallible>>,
    FS: Future<Output = Result<Response<BodyS>, Infallible>>,
{
    type Output = Result<Response<Either<BodyA, BodyS>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match self.project() {
            OptionalProj::On(future) => {
                let Ok(response) = ready!(future.poll(cx));
                response.map(Either::Left)
            }
            OptionalProj::Off(future) => {
                let Ok(response) = ready!(future.poll(cx));
                response.map(Either::Right)
            }
        }))
    }
}
