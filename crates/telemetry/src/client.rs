//! The client layer: outgoing requests continue the current trace.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use opentelemetry::trace::TraceContextExt;
use palisade_core::SpanLevel;
use pin_project::pin_project;
use tower::{Layer, Service};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    attributes::{METHODS, OTHER_METHOD, method_index},
    propagation::{self, TRACEPARENT},
    service::TARGET,
};

/// Injects the current trace context (`traceparent`, `tracestate`) into the outgoing requests of
/// an HTTP client built from tower services (hyper-util's `Client`, a `tower::ServiceBuilder`
/// stack around it, or any `Service<http::Request<B>>`).
///
/// By default each call also gets an OpenTelemetry **client span** (`{method}`, kind client,
/// with `http.request.method`, `server.address`, `server.port`, `url.full` without the query,
/// `http.response.status_code`, `error.type`; 4xx and 5xx set the error status, as the client
/// conventions say), a child of the current span, and the request carries the client span's
/// context: the downstream server span becomes its child. The client span ends when the
/// response head arrives. Without a client span
/// ([`without_client_span`](Self::without_client_span)), the request carries the current span's
/// context.
///
/// Inside a handler behind [`TelemetryLayer`](crate::TelemetryLayer) the current span is the
/// request's server span, so a handler that calls another service continues the trace with no
/// plumbing. Work moved to another task keeps it with `tracing::Instrument::in_current_span`.
/// A `traceparent` the caller set on the request is left alone; with no valid current context
/// (tracing off, no OpenTelemetry layer) the request is sent unchanged.
///
/// ```
/// use palisade_telemetry::TracePropagationLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = TracePropagationLayer::new().layer(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(http::Response::new(req.headers().contains_key("traceparent")))
/// }));
/// // Outside any traced request there is no context to propagate.
/// let response = client.oneshot(http::Request::new(())).await.unwrap();
/// assert!(!response.into_body());
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TracePropagationLayer {
    client_span: bool,
    level: SpanLevel,
}

impl TracePropagationLayer {
    /// Propagation with a client span at `INFO`.
    pub fn new() -> Self {
        Self {
            client_span: true,
            level: SpanLevel::Info,
        }
    }

    /// Propagates the current span's context, with no client span.
    #[must_use]
    pub fn without_client_span(mut self) -> Self {
        self.client_span = false;
        self
    }

    /// The level of the client span. Default [`SpanLevel::Info`].
    #[must_use]
    pub fn span_level(mut self, level: SpanLevel) -> Self {
        self.level = level;
        self
    }
}

impl Default for TracePropagationLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for TracePropagationLayer {
    type Service = TracePropagation<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TracePropagation {
            inner,
            layer: *self,
        }
    }
}

/// The client middleware of [`TracePropagationLayer`].
#[derive(Debug, Clone)]
pub struct TracePropagation<S> {
    inner: S,
    layer: TracePropagationLayer,
}

impl<S> TracePropagation<S> {
    palisade_core::inner_service_accessors!();
}

macro_rules! client_span {
    ($level:expr, $request:ident, $method:ident) => {
        palisade_core::span_at!(
            $level,
            target: TARGET,
            "HTTP client request",
            otel.name = if $method == OTHER_METHOD { "HTTP" } else { METHODS[usize::from($method)] },
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = METHODS[usize::from($method)],
            server.address = $request.uri().host(),
            server.port = $request.uri().port_u16().map(i64::from).or_else(|| {
                match $request.uri().scheme_str() {
                    Some("https") => Some(443),
                    Some("http") => Some(80),
                    _ => None,
                }
            }),
            url.full = full_url(&$request).map(tracing::field::display),
            http.response.status_code = Empty,
            error.type = Empty,
        )
    };
}

/// The context of the innermost entered span the OpenTelemetry layer sees (spans it filters
/// out, such as `palisade-request-id`'s, are skipped), else the current span's.
pub(crate) fn current_context() -> opentelemetry::Context {
    let current = opentelemetry::Context::current();
    if current.has_active_span() {
        current
    } else {
        Span::current().context()
    }
}

/// `scheme://host[:port]/path` of an absolute request target: no user info, no query.
fn full_url<B>(request: &Request<B>) -> Option<impl std::fmt::Display + '_> {
    struct Url<'a>(&'a str, &'a str, Option<u16>, &'a str);
    impl std::fmt::Display for Url<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}://{}", self.0, self.1)?;
            if let Some(port) = self.2 {
                write!(f, ":{port}")?;
            }
            f.write_str(self.3)
        }
    }
    let uri = request.uri();
    Some(Url(
        uri.scheme_str()?,
        uri.host()?,
        uri.port_u16(),
        uri.path(),
    ))
}

impl<S, B, RB> Service<Request<B>> for TracePropagation<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ClientFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let span = if self.layer.client_span {
            let method = method_index(request.method());
            client_span!(self.layer.level, request, method)
        } else {
            Span::none()
        };
        if !request.headers().contains_key(TRACEPARENT) {
            let cx = if span.is_disabled() {
                current_context()
            } else {
                span.context()
            };
            propagation::inject(&cx, request.headers_mut());
        }
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ClientFuture {
            inner,
            span: Some(span),
        }
    }
}

/// The response future of [`TracePropagation`]: polls the call inside the client span and ends
/// the span when the response head (or the error) arrives.
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ClientFuture<F> {
    #[pin]
    inner: F,
    span: Option<Span>,
}

impl<F, RB, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.as_ref().map(Span::enter);
            ready!(this.inner.poll(cx))
        };
        if let Some(span) = this.span.take().filter(|s| !s.is_disabled()) {
            if let Ok(response) = &result {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                if status.is_client_error() || status.is_server_error() {
                    span.record("error.type", status.as_str());
                    span.record("otel.status_code", "error");
                }
            } else {
                span.record("error.type", std::any::type_name::<E>());
                span.record("otel.status_code", "error");
            }
        }
        Poll::Ready(result)
    }
}
