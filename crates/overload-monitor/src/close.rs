//! [`CloseConnectionsLayer`]: `Connection: close` on responses while a resource is at or past a
//! level (degrade by default), so clients reconnect, and the load balancer spreads them to
//! replicas with room, instead of holding keep-alive connections (and their descriptors and
//! buffers) to a server that is running out.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Request, Response, header};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::pressure::{Pressure, PressureHandle};

/// Adds `Connection: close` to every response while the monitors' worst level is at least
/// `from`. Get the handle from [`OverloadMonitor::pressure`](crate::OverloadMonitor::pressure).
#[derive(Debug, Clone)]
pub struct CloseConnectionsLayer {
    pressure: PressureHandle,
    from: Pressure,
}

impl CloseConnectionsLayer {
    /// Closes connections from [`Pressure::Degrade`].
    pub fn new(pressure: PressureHandle) -> Self {
        Self::from_level(pressure, Pressure::Degrade)
    }

    /// Closes connections from `from`.
    pub fn from_level(pressure: PressureHandle, from: Pressure) -> Self {
        Self { pressure, from }
    }
}

impl<S> Layer<S> for CloseConnectionsLayer {
    type Service = CloseConnections<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CloseConnections {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`CloseConnectionsLayer`].
#[derive(Debug, Clone)]
pub struct CloseConnections<S> {
    inner: S,
    layer: CloseConnectionsLayer,
}

impl<S> CloseConnections<S> {
    palisade_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CloseConnections<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            layer: self.layer.clone(),
        }
    }
}

/// The response future of [`CloseConnections`].
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    layer: CloseConnectionsLayer,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        // Read when the response is ready: the level may have risen while it was being made.
        if this.layer.pressure.level() >= this.layer.from {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn closes_from_degrade_only() {
        let pressure = PressureHandle::default();
        let svc = CloseConnectionsLayer::new(pressure.clone()).layer(service_fn(
            |_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) },
        ));
        let connection =
            |response: Response<()>| response.headers().get(header::CONNECTION).cloned();
        for (level, closes) in [
            (Pressure::Normal, false),
            (Pressure::Warn, false),
            (Pressure::Degrade, true),
            (Pressure::Critical, true),
        ] {
            pressure.set(level);
            let response = svc.clone().oneshot(Request::new(())).await.unwrap();
            assert_eq!(connection(response).is_some(), closes, "{level:?}");
        }
    }
}
