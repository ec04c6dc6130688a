//! The level of the span a layer opens per request, and [`span_at!`](crate::span_at), which opens
//! it at a level chosen at run time.

/// The level of the span a layer opens around each request, or `off` for none.
///
/// `tracing` fixes a span's level at its call site, so a level read from configuration needs one
/// call site per level; [`span_at!`](crate::span_at) writes them out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SpanLevel {
    /// No span.
    Off,
    /// `ERROR`.
    Error,
    /// `WARN`.
    Warn,
    /// `INFO`, the default.
    #[default]
    Info,
    /// `DEBUG`.
    Debug,
    /// `TRACE`.
    Trace,
}

/// Opens a span at a [`SpanLevel`] chosen at run time: `span_at!(level, "name", field = value, ..)`
/// (or `span_at!(level, target: "t", "name", ..)`) takes the arguments of `tracing::span!` after
/// the level, and gives `Span::none()` for
/// [`SpanLevel::Off`].
///
/// ```
/// use palisade_core::{SpanLevel, span_at};
///
/// let span = span_at!(SpanLevel::Debug, "request", request_id = "abc");
/// let _entered = span.enter();
/// assert!(span_at!(SpanLevel::Off, "request").is_none());
/// ```
#[macro_export]
macro_rules! span_at {
    ($level:expr, target: $target:expr, $($span:tt)+) => {{
        use $crate::__private::tracing;
        match $level {
            $crate::SpanLevel::Off => tracing::Span::none(),
            $crate::SpanLevel::Error => tracing::span!(target: $target, tracing::Level::ERROR, $($span)+),
            $crate::SpanLevel::Warn => tracing::span!(target: $target, tracing::Level::WARN, $($span)+),
            $crate::SpanLevel::Info => tracing::span!(target: $target, tracing::Level::INFO, $($span)+),
            $crate::SpanLevel::Debug => tracing::span!(target: $target, tracing::Level::DEBUG, $($span)+),
            $crate::SpanLevel::Trace => tracing::span!(target: $target, tracing::Level::TRACE, $($span)+),
        }
    }};
    ($level:expr, $($span:tt)+) => {{
        use $crate::__private::tracing;
        match $level {
            $crate::SpanLevel::Off => tracing::Span::none(),
            $crate::SpanLevel::Error => tracing::span!(tracing::Level::ERROR, $($span)+),
            $crate::SpanLevel::Warn => tracing::span!(tracing::Level::WARN, $($span)+),
            $crate::SpanLevel::Info => tracing::span!(tracing::Level::INFO, $($span)+),
            $crate::SpanLevel::Debug => tracing::span!(tracing::Level::DEBUG, $($span)+),
            $crate::SpanLevel::Trace => tracing::span!(tracing::Level::TRACE, $($span)+),
        }
    }};
}
