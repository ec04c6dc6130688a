//! The server middleware: the span, the parent context, the metrics, and the guard that ends
//! them with the response body.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{Request, Response, header, uri::Scheme};
use opentelemetry::{Array, StringValue, Value, trace::TraceContextExt};
use palisade_core::{BodyEnd, OnBodyEnd, RequestId, ResponseBody, RouteLabel, peer_ip};
use tower::Service;
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    access_log::{AccessRecord, Ending},
    attributes::{
        MAX_RECORDED_LEN, OTHER_METHOD, SpanName, header_values, method_index, protocol_version,
        redact_query, server_address, truncated,
    },
    config::Settings,
    extract::{ServerSpan, TraceId},
    future::ResponseFuture,
    propagation,
};

/// The tracing target of the server span.
pub const TARGET: &str = "palisade_telemetry";

/// The server span's name (the client span of `TracePropagationLayer` shares its target).
pub(crate) const SPAN_NAME: &str = "HTTP request";

/// Whether `meta` is the server span's.
pub(crate) fn is_server_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == TARGET && meta.name() == SPAN_NAME
}

/// `error.type` when the response body fails after the head was sent.
pub(crate) const BODY_ERROR: &str = "response_body_error";

/// The server middleware of [`TelemetryLayer`](crate::TelemetryLayer).
#[derive(Clone)]
pub struct Telemetry<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S: fmt::Debug> fmt::Debug for Telemetry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Telemetry<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    palisade_core::inner_service_accessors!();
}

/// Creates the server span at `$level`. Field values are evaluated only when a subscriber
/// enables the span, so a disabled span costs one callsite check.
macro_rules! server_span {
    ($level:expr, $settings:ident, $request:ident, $method:ident, $https:ident, $route:ident, $server:ident) => {
        palisade_core::span_at!(
            $level,
            target: TARGET,
            "HTTP request",
            otel.name = %SpanName { method: $method, route: $route },
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = crate::attributes::METHODS[usize::from($method)],
            http.request.method_original = ($method == OTHER_METHOD)
                .then(|| truncated($request.method().as_str(), 64)),
            url.path = $request.uri().path(),
            url.scheme = if $https { "https" } else { "http" },
            url.query = $settings
                .record_query
                .then(|| $request.uri().query())
                .flatten()
                .map(|q| redact_query(q, &$settings.redacted_query_keys)),
            http.route = $route,
            http.response.status_code = Empty,
            network.protocol.version = protocol_version($request.version()),
            user_agent.original = $request
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| truncated(ua, MAX_RECORDED_LEN)),
            client.address = peer_ip($request.extensions()).map(tracing::field::display),
            server.address = $server
                .get_or_init(|| server_address(&$request, $https))
                .map(|(host, _)| host),
            server.port = $server.get_or_init(|| server_address(&$request, $https)).map(|(_, port)| port),
            error.type = Empty,
            // Display, not a string: a log line shows it unquoted and unescaped, as the request
            // id layer's own span does (an id is validated, there is nothing to escape).
            request_id = $request
                .extensions()
                .get::<RequestId>()
                .map(tracing::field::display),
            trace_id = Empty,
        )
    };
}

/// Whether a span created now would get a parent from the current context: then a request
/// that carries no trace context must reset it, because a server span starts a trace.
fn has_contextual_parent() -> bool {
    opentelemetry::Context::map_current(TraceContextExt::has_active_span)
        || tracing::dispatcher::get_default(|d| d.current_span().is_known())
}

fn string_array(values: Vec<String>) -> Value {
    Value::Array(Array::String(
        values.into_iter().map(StringValue::from).collect(),
    ))
}

/// The server span of `request`, with its parent context set, or a disabled span.
fn server_span<B>(
    settings: &Settings,
    request: &mut Request<B>,
    method: u8,
    https: bool,
    route: &RouteLabel,
) -> Span {
    // With no subscriber at all every span is disabled, yet `tracing`'s `log` fallback (which
    // tower switches on) evaluates each field of a disabled span for a `log` record: about 1 100
    // instructions per request for nothing. No subscriber, no span.
    if !tracing::dispatcher::has_been_set() {
        return Span::none();
    }
    let route = route.is_matched().then(|| route.as_str());
    // Host and port come from one parse, made only when the span is enabled.
    let server = std::cell::OnceCell::new();
    let span = server_span!(
        settings.span_level,
        settings,
        request,
        method,
        https,
        route,
        server
    );
    if span.is_disabled() {
        return span;
    }
    let remote = if settings.accept_incoming_context {
        propagation::extract(request.headers(), settings.max_tracestate_len)
    } else {
        None
    };
    // An error here means there is no OpenTelemetry layer: nothing to parent.
    match remote {
        Some(parent) => {
            let _ = span.set_parent(parent);
        }
        None if has_contextual_parent() => {
            let _ = span.set_parent(opentelemetry::Context::new());
        }
        None => {}
    }
    if settings.trace_id_field
        && let Some(trace_id) = TraceId::of(&span)
    {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    if settings.record_client_subject
        && let Some(identity) = request.extensions().get::<palisade_core::ClientIdentity>()
    {
        span.set_attribute("tls.client.subject", identity.subject().to_owned());
    }
    for (name, key) in &*settings.request_headers {
        if let Some(values) = header_values(request.headers(), name) {
            span.set_attribute(key.clone(), string_array(values));
        }
    }
    request.extensions_mut().insert(ServerSpan(span.clone()));
    span
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Telemetry<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody, RequestTelemetry>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        if !settings.tracing && !settings.metrics && settings.access_log.is_none() {
            return ResponseFuture::new(self.inner.call(request), None);
        }

        // Taken first, so the duration includes this layer's own work.
        let start = settings.metrics.then(Instant::now);
        let method = method_index(request.method());
        let https = match request.uri().scheme() {
            Some(scheme) => *scheme == Scheme::HTTPS,
            None => settings.default_https,
        };
        let route = RouteLabel::of(&request);
        let access = settings
            .access_log
            .as_ref()
            .map(|_| Box::new(AccessRecord::new(&request, route.clone())));
        let span = if settings.tracing {
            server_span(settings, &mut request, method, https, &route)
        } else {
            Span::none()
        };
        let measured = match start {
            Some(start) => {
                settings.http_metrics.active(method, https).increment(1.0);
                Some((route, start))
            }
            // No metrics, no span (no subscriber wants it), no access log: nothing to end.
            None if span.is_disabled() && access.is_none() => {
                return ResponseFuture::new(self.inner.call(request), None);
            }
            None => None,
        };
        let telemetry = RequestTelemetry {
            settings: self.settings.clone(),
            method,
            https,
            measured,
            access,
            span,
            status: 0,
            sampled: true,
            done: false,
        };
        let inner = {
            let _entered = telemetry.span.enter();
            self.inner.call(request)
        };
        ResponseFuture::new(inner, Some(telemetry))
    }
}

/// What one request is being observed with: its span, start time and metric labels. It ends the
/// span and records the duration exactly once: when the response body ends (as the completion
/// guard of [`ResponseBody`]), or when the request ends without a response.
pub struct RequestTelemetry {
    settings: Arc<Settings>,
    method: u8,
    https: bool,
    /// The route label and the start, when metrics are on.
    measured: Option<(RouteLabel, Instant)>,
    /// What the access log line needs, when the access log is on. Boxed: a few hundred bytes
    /// that every request's guard would otherwise carry (and move) with the access log off.
    access: Option<Box<AccessRecord>>,
    span: Span,
    /// The response status, 0 until there is a response.
    status: u16,
    /// Whether the span is sampled (exported), as seen while it was entered; until then, assumed.
    sampled: bool,
    done: bool,
}

impl fmt::Debug for RequestTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTelemetry")
            .field(
                "method",
                &crate::attributes::METHODS[usize::from(self.method)],
            )
            .field("route", &self.measured.as_ref().map(|(route, _)| route))
            .field("status", &self.status)
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl RequestTelemetry {
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Notes whether the span is sampled. Call it while the span is entered: the current
    /// OpenTelemetry context is then the span's (read without locking, unlike
    /// `OpenTelemetrySpanExt::context`).
    pub(crate) fn note_sampling(&mut self, sampled: bool) {
        self.sampled = sampled;
    }

    /// Whether the span entered on this thread is sampled, by the current OpenTelemetry context.
    pub(crate) fn current_is_sampled(&self) -> bool {
        !self.span.is_disabled()
            && opentelemetry::Context::map_current(|cx| cx.span().span_context().is_sampled())
    }

    /// The response head is here: status code, error status for 5xx, response headers.
    pub(crate) fn on_response<B>(&mut self, response: &Response<B>) {
        let status = response.status();
        self.status = status.as_u16();
        if let Some(access) = &mut self.access {
            access.on_response(response);
        }
        if self.span.is_disabled() {
            return;
        }
        self.span
            .record("http.response.status_code", i64::from(self.status));
        if status.is_server_error() {
            // 5xx is an error of the server span; 4xx is the client's and leaves it unset.
            self.span.record("otel.status_code", "error");
            self.span.record("error.type", status.as_str());
        }
        for (name, key) in &*self.settings.response_headers {
            if let Some(values) = header_values(response.headers(), name) {
                self.span.set_attribute(key.clone(), string_array(values));
            }
        }
    }

    /// The inner service failed: no response.
    pub(crate) fn on_error<E>(&mut self) {
        if let Some(access) = &mut self.access {
            access.on_error();
        }
        if !self.span.is_disabled() {
            self.span.record("error.type", std::any::type_name::<E>());
            self.span.record("otel.status_code", "error");
        }
        self.finish(None);
    }

    fn finish(&mut self, end: Option<BodyEnd>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Some((route, start)) = &self.measured {
            let metrics = &self.settings.http_metrics;
            metrics.active(self.method, self.https).decrement(1.0);
            if self.status != 0 {
                metrics.record_duration(
                    self.method,
                    self.status,
                    route.as_str(),
                    start.elapsed().as_secs_f64(),
                );
            }
        }
        if !self.span.is_disabled() {
            if end == Some(BodyEnd::Errored) {
                self.span.record("error.type", BODY_ERROR);
                self.span.record("otel.status_code", "error");
            }
            // The OpenTelemetry layer ends a span at its last exit: enter and exit it here so the
            // span ends with the body, not when the response head was returned. A span that is
            // not sampled has no end time to get right.
            if self.sampled {
                self.span.in_scope(|| {});
            }
        }
        if let (Some(access), Some(log)) = (self.access.take(), &self.settings.access_log) {
            let trace_id = (!self.span.is_disabled())
                .then(|| TraceId::of(&self.span))
                .flatten()
                .map(|id| id.to_string());
            (*access).write(
                log,
                &self.settings.redacted_query_keys,
                &Ending {
                    method: crate::attributes::METHODS[usize::from(self.method)],
                    status: self.status,
                    end,
                    trace_id,
                },
            );
        }
    }
}

impl OnBodyEnd for RequestTelemetry {
    fn on_body_end(mut self, end: BodyEnd) {
        self.finish(Some(end));
    }

    #[inline]
    fn on_data(&mut self, len: usize) {
        if let Some(access) = &mut self.access {
            access.on_data(len);
        }
    }
}

impl Drop for RequestTelemetry {
    fn drop(&mut self) {
        // The request ended without reaching its body: the future was dropped (the client went
        // away) or the body was never created.
        self.finish(None);
    }
}
