//! The logger's view of the server span: the fields that join a log line to its request and
//! its trace, not the seventeen attributes meant for the trace exporter.
//!
//! `tracing_subscriber::fmt` formats every field of a span into a string when the span starts,
//! and appends every later `record`, whether or not anything is logged inside the span. This
//! wrapper stores, for the server span only, the formatter's rendering of `request_id` (text
//! lines get it written here, as the formatter writes it without colours) before the formatter
//! sees the span (the formatter keeps a string it finds), and passes on
//! only the record of `trace_id`; every other span and event reaches the formatter unchanged.

use std::fmt;

use tracing::{
    Dispatch, Event, Metadata, Subscriber,
    field::{Field, Value, Visit},
    span::{Attributes, Id, Record},
    subscriber::Interest,
};
use tracing_subscriber::{
    filter::LevelFilter,
    fmt::{
        FormatFields, FormattedFields,
        format::{DefaultFields, JsonFields},
    },
    layer::{Context, Layer},
    registry::LookupSpan,
};

use crate::service::is_server_span;

/// The field of the server span a log line keeps at the span's start.
const KEPT: &str = "request_id";
/// The field of the server span a log line gains when it is recorded.
const RECORDED: &str = "trace_id";

/// The `fmt` layer `L`, whose field formatter is `N`, seeing only the server span's
/// [`KEPT`] and [`RECORDED`] fields.
pub(crate) struct ServerSpanLog<L, N> {
    inner: L,
    formatter: N,
    /// `N` is `DefaultFields`: the kept field is written here as it would write it without
    /// colours (`request_id=...`), without its per-field machinery.
    plain: bool,
}

impl<L> ServerSpanLog<L, DefaultFields> {
    /// Around a text logger.
    pub(crate) fn text(inner: L) -> Self {
        Self {
            inner,
            formatter: DefaultFields::default(),
            plain: true,
        }
    }
}

impl<L> ServerSpanLog<L, JsonFields> {
    /// Around a JSON logger.
    pub(crate) fn json(inner: L) -> Self {
        Self {
            inner,
            formatter: JsonFields::default(),
            plain: false,
        }
    }
}

impl<S, L, N> Layer<S> for ServerSpanLog<L, N>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if is_server_span(attrs.metadata())
            && let Some(span) = ctx.span(id)
        {
            let mut fields = FormattedFields::<N>::new(String::new());
            let mut kept = Kept {
                formatter: &self.formatter,
                plain: self.plain,
                fields: &mut fields,
                meta: attrs.metadata(),
                found: false,
            };
            attrs.record(&mut kept);
            let formatted = kept.found || {
                // The formatter's empty rendering ("" for text, "{}" for JSON).
                let none: [(&Field, Option<&dyn Value>); 0] = [];
                let values = attrs.metadata().fields().value_set(&none);
                let empty = Attributes::new(attrs.metadata(), &values);
                self.formatter
                    .format_fields(fields.as_writer(), &empty)
                    .is_ok()
            };
            if formatted {
                span.extensions_mut().insert(fields);
            }
        }
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && is_server_span(span.metadata())
            && span
                .metadata()
                .fields()
                .field(RECORDED)
                .is_none_or(|field| !values.contains(&field))
        {
            return;
        }
        self.inner.on_record(id, values, ctx);
    }

    // Everything else goes to the formatter as it is.

    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.inner.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
    // `downcast_raw` keeps its default (this type only): the formatter inside is private to
    // the logger, and nothing downcasts a boxed logger to find it.
}

/// Writes a field as `DefaultFields` does without colours: `name=value`, values by `Debug`
/// (a `Display` value's `Debug` is its `Display`).
struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{}={value:?}", field.name());
    }
}

/// Formats the kept field, with the formatter the logger uses, when the span records it.
struct Kept<'a, N> {
    formatter: &'a N,
    plain: bool,
    fields: &'a mut FormattedFields<N>,
    meta: &'static Metadata<'static>,
    found: bool,
}

impl<N> Kept<'_, N>
where
    N: for<'w> FormatFields<'w>,
{
    fn keep(&mut self, field: &Field, value: &dyn Value) {
        if self.plain {
            value.record(field, &mut Text(&mut self.fields.fields));
            self.found = true;
            return;
        }
        let values = [(field, Some(value))];
        let values = self.meta.fields().value_set(&values);
        let kept = Attributes::new(self.meta, &values);
        self.found = self
            .formatter
            .format_fields(self.fields.as_writer(), &kept)
            .is_ok();
    }
}

impl<N> Visit for Kept<'_, N>
where
    N: for<'w> FormatFields<'w>,
{
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == KEPT {
            self.keep(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == KEPT {
            self.keep(field, &tracing::field::debug(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use palisade_core::RequestId;
    use palisade_testkit::LogCapture;
    use tower::{Layer as _, ServiceExt, service_fn};
    use tracing_subscriber::layer::SubscriberExt;

    use crate::{LogFormat, TelemetryLayer, TracingConfig};

    /// What the logger writes for one request to `/items?page=2` with id `abc`, whose handler
    /// logs one line.
    async fn logged(format: LogFormat, log_span_attributes: bool) -> String {
        let capture = LogCapture::default();
        let config = TracingConfig {
            log_format: format,
            log_span_attributes,
            ..TracingConfig::default()
        };
        let writer = capture.clone();
        let logger = config.log_layer(move || writer.clone()).unwrap();
        // This thread's subscriber: the current-thread runtime polls everything here.
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::Registry::default().with(logger));
        // Tests beside this one reach the same call sites with no subscriber: one registering a
        // call site while this subscriber was installed can leave it cached as "never enabled".
        tracing::callsite::rebuild_interest_cache();
        let service = TelemetryLayer::new().layer(service_fn(|_: Request<()>| async {
            tracing::info!("inside the handler");
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let mut request = Request::get("/items?page=2").body(()).unwrap();
        request
            .extensions_mut()
            .insert(RequestId::new("abc").unwrap());
        drop(service.oneshot(request).await.unwrap());
        capture.text()
    }

    #[tokio::test]
    async fn text_lines_name_the_request_by_id_only() {
        let line = logged(LogFormat::Text, false).await;
        assert!(line.contains("HTTP request{request_id=abc}: "), "{line}");
        assert!(!line.contains("url.path"), "{line}");
    }

    #[tokio::test]
    async fn text_lines_carry_every_attribute_when_asked() {
        let line = logged(LogFormat::Text, true).await;
        assert!(line.contains(r#"url.path="/items""#), "{line}");
        assert!(line.contains("request_id=abc}"), "{line}");
    }

    #[tokio::test]
    async fn json_lines_carry_the_request_id_as_the_span() {
        let line = logged(LogFormat::Json, false).await;
        let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(line["message"], "inside the handler");
        assert_eq!(line["span"]["request_id"], "abc");
        assert_eq!(line["span"]["name"], "HTTP request");
        assert!(line["span"].get("url.path").is_none(), "{line}");
    }

    /// Records after the start: the trace id reaches the line, the status does not.
    #[test]
    fn later_records_pass_only_for_the_trace_id() {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let logger = TracingConfig::default()
            .log_layer(move || writer.clone())
            .unwrap();
        let subscriber = tracing_subscriber::Registry::default().with(logger);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                target: "palisade_telemetry",
                "HTTP request",
                url.path = "/items",
                request_id = tracing::field::display("abc"),
                http.response.status_code = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            );
            span.record("http.response.status_code", 200);
            span.record("trace_id", tracing::field::display("4bf92f3577b34da6"));
            span.in_scope(|| tracing::info!("recorded"));
        });
        let line = capture.text();
        assert!(
            line.contains("HTTP request{request_id=abc trace_id=4bf92f3577b34da6}: "),
            "{line}"
        );
        assert!(!line.contains("status_code"), "{line}");
    }
}
