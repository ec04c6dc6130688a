//! The trace id of the request, for handlers.

use std::{convert::Infallible, fmt};

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The server span of a request, in its extensions.
#[derive(Clone)]
pub(crate) struct ServerSpan(pub(crate) Span);

/// The W3C trace id of the request being handled: the caller's when the request carried a valid
/// `traceparent`, a fresh one otherwise. Shown as 32 lowercase hex digits, the form tracing
/// backends search for, so handlers can put it in responses and error pages.
///
/// As an axum extractor it needs the route to be behind [`TelemetryLayer`] with tracing on and
/// an OpenTelemetry layer installed (see [`init`]); otherwise it rejects with
/// [`MissingTraceId`] (500). `Option<TraceId>` never rejects.
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade_telemetry::{TelemetryLayer, TraceId};
///
/// async fn handler(trace: Option<TraceId>) -> String {
///     match trace {
///         Some(trace) => format!("trace {trace}"),
///         None => "not traced".to_owned(),
///     }
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(TelemetryLayer::new());
/// ```
///
/// [`TelemetryLayer`]: crate::TelemetryLayer
/// [`init`]: crate::init
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(opentelemetry::trace::TraceId);

impl TraceId {
    /// The trace id of `span`, if it is part of a valid OpenTelemetry trace.
    pub fn of(span: &Span) -> Option<Self> {
        let cx = span.context();
        let span_context = cx.span().span_context().clone();
        span_context
            .is_valid()
            .then(|| Self(span_context.trace_id()))
    }

    /// The trace id of the current span (inside a handler: the request's), if any.
    pub fn current() -> Option<Self> {
        let cx = crate::client::current_context();
        let span_context = cx.span().span_context().clone();
        span_context
            .is_valid()
            .then(|| Self(span_context.trace_id()))
    }

    /// The OpenTelemetry trace id.
    pub fn as_otel(&self) -> opentelemetry::trace::TraceId {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The rejection of the [`TraceId`] extractor: the route is not traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingTraceId;

impl fmt::Display for MissingTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "missing trace id: the route is not behind palisade_telemetry::TelemetryLayer with \
             tracing on and an OpenTelemetry layer installed",
        )
    }
}

impl std::error::Error for MissingTraceId {}

impl IntoResponse for MissingTraceId {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

fn from_parts(parts: &Parts) -> Option<TraceId> {
    parts
        .extensions
        .get::<ServerSpan>()
        .and_then(|ServerSpan(span)| TraceId::of(span))
}

impl<S: Send + Sync> FromRequestParts<S> for TraceId {
    type Rejection = MissingTraceId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        from_parts(parts).ok_or(MissingTraceId)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for TraceId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(from_parts(parts))
    }
}
