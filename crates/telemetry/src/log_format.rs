//! The request a log line belongs to, without a span per request.
//!
//! A log line written while a request is served names it: `HTTP request{request_id=...}:` in
//! text, `"span":{"request_id":"...","name":"HTTP request"}` in JSON, as the server span showed it.
//! When no spans are exported, the logger takes the id from the [current request
//! id](palisade_core::RequestId::current), which the request id layer sets while the request is
//! polled, and does not ask for the server span at all: with no other layer asking either, the
//! span is never created, and a request that logs nothing pays nothing for its context (a
//! `tracing-subscriber` span costs about 9 500 instructions per request, created, entered on every
//! poll and closed). When spans are exported the server span exists anyway and the logger shows
//! it as before (see `log_fields`), with `trace_id` beside the id.
//!
//! Both formats write the line as `tracing_subscriber::fmt`'s own formats do, and leave it as
//! they would when the line has a span of Palisade's in its scope, or no current request.

use std::fmt;

use palisade_core::RequestId;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Full, Json, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use crate::service::{SPAN_NAME as NAME, is_server_span};

/// The request id layer's own span (when the telemetry layer's is off).
const REQUEST_ID_TARGET: &str = "palisade_request_id";

/// The id to name on the line being formatted: the current request's, unless a span of
/// Palisade's in the line's scope names it already.
fn context_id<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<RequestId>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let id = RequestId::current()?;
    let named = ctx.event_scope().is_some_and(|mut scope| {
        scope.any(|span| {
            is_server_span(span.metadata()) || span.metadata().target() == REQUEST_ID_TARGET
        })
    });
    (!named).then_some(id)
}

/// Whether the line has a span in its scope, as the logger sees it.
fn has_scope<S, N>(ctx: &FmtContext<'_, S, N>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()
        .is_some_and(|mut scope| scope.next().is_some())
}

/// `fmt`'s `Full` text line with the request context first in the span scope.
pub(crate) struct ContextText {
    /// The line from the span scope on: `Full` without its timestamp and level, which come
    /// before the context and are written here.
    rest: Format<Full, ()>,
}

impl ContextText {
    pub(crate) fn new() -> Self {
        Self {
            rest: tracing_subscriber::fmt::format()
                .without_time()
                .with_level(false),
        }
    }
}

/// `fmt`'s level column: five characters, coloured with ANSI as `fmt` colours it.
fn write_level(writer: &mut Writer<'_>, level: Level) -> fmt::Result {
    let (text, colour) = match level {
        Level::TRACE => ("TRACE", "35"),
        Level::DEBUG => ("DEBUG", "34"),
        Level::INFO => (" INFO", "32"),
        Level::WARN => (" WARN", "33"),
        Level::ERROR => ("ERROR", "31"),
    };
    if writer.has_ansi_escapes() {
        write!(writer, "\x1b[{colour}m{text}\x1b[0m ")
    } else {
        write!(writer, "{text} ")
    }
}

impl<S, N> FormatEvent<S, N> for ContextText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        if ansi {
            writer.write_str("\x1b[2m")?;
        }
        if SystemTime.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str(if ansi { "\x1b[0m " } else { " " })?;
        write_level(&mut writer, *event.metadata().level())?;
        if let Some(id) = context_id(ctx) {
            // As `Full` writes a span: bold name and braces, a dimmed colon, and a space before
            // the target unless more spans follow.
            if ansi {
                write!(
                    writer,
                    "\x1b[1m{NAME}{{\x1b[0mrequest_id={id}\x1b[1m}}\x1b[0m\x1b[2m:\x1b[0m"
                )?;
            } else {
                write!(writer, "{NAME}{{request_id={id}}}:")?;
            }
            if !has_scope(ctx) {
                writer.write_char(' ')?;
            }
        }
        self.rest.format_event(ctx, writer, event)
    }
}

/// The logger's JSON line: the event's fields at the top level, its current span under `span`.
pub(crate) fn json_format() -> Format<Json> {
    tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
}

/// [`json_format`]'s line, with the request context as its `span` when it has no current span.
pub(crate) struct ContextJson {
    inner: Format<Json>,
}

impl ContextJson {
    pub(crate) fn new() -> Self {
        Self {
            inner: json_format(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for ContextJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line's `span` is its current span, found as the JSON format finds it: the context
        // stands in only where there is none.
        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        let id = current.is_none().then(|| context_id(ctx)).flatten();
        let Some(id) = id else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        // `{...}\n`: the object gets one more entry before its closing brace.
        let Some(object) = line.trim_end().strip_suffix('}') else {
            return writer.write_str(&line);
        };
        writer.write_str(object)?;
        writer.write_str(",\"span\":{\"request_id\":\"")?;
        // A request id is visible ASCII: only `"` and `\` need escaping in a JSON string.
        for c in id.as_str().chars() {
            if matches!(c, '"' | '\\') {
                writer.write_char('\\')?;
            }
            writer.write_char(c)?;
        }
        write!(writer, "\",\"name\":\"{NAME}\"}}}}")?;
        writeln!(writer)
    }
}
