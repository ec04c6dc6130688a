//! The response future of [`Telemetry`](crate::Telemetry).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use palisade_core::ResponseBody;
use pin_project::pin_project;

use crate::service::RequestTelemetry;

/// Polls the inner service inside the server span (so handler spans and events are its
/// children), records the response, and hands the request's telemetry to the response body,
/// which ends it when the body ends.
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    telemetry: Option<RequestTelemetry>,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, telemetry: Option<RequestTelemetry>) -> Self {
        Self { inner, telemetry }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B, RequestTelemetry>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (result, sampled) = {
            let _entered = this.telemetry.as_ref().map(|t| t.span().enter());
            let result = ready!(this.inner.poll(cx));
            let sampled = this
                .telemetry
                .as_ref()
                .is_some_and(RequestTelemetry::current_is_sampled);
            (result, sampled)
        };
        Poll::Ready(match result {
            Ok(response) => Ok(match this.telemetry.take() {
                Some(mut telemetry) => {
                    telemetry.note_sampling(sampled);
                    telemetry.on_response(&response);
                    response.map(|body| ResponseBody::with_guard(body, telemetry))
                }
                None => response.map(ResponseBody::new),
            }),
            Err(error) => {
                if let Some(mut telemetry) = this.telemetry.take() {
                    telemetry.on_error::<E>();
                }
                Err(error)
            }
        })
    }
}
