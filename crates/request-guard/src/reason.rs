//! [`Reason`]: why a request target was refused. One name serves as the problem `reason`, the
//! metric label and the log field, so an operator can follow a refusal from the client's error to
//! the dashboard to the log line.

use std::fmt;

use http::StatusCode;

/// Why the guard refused a request.
///
/// [`as_str`](Self::as_str) is the stable name used in the problem document (`reason` member and
/// `type` URN), in the `reason` label of `palisade_request_guard_rejected_total` and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A `.` or `..` path segment, raw or percent-encoded (`%2e`, `.%2E`), also before a `;`
    /// parameter (`..;/`).
    DotSegment,
    /// A percent-encoded `/` or `\` in the path (`%2f`, `%5c`): one segment to the router, two to
    /// whatever decodes it later.
    EncodedSlash,
    /// A raw `\` in the path, a separator on Windows and to some proxies.
    Backslash,
    /// An empty path segment (`//`), which defeats prefix rules such as "deny `/admin`".
    DoubleSlash,
    /// A percent-escape that survives decoding (`%252e` decodes to `%2e`).
    DoubleEncoding,
    /// A NUL byte (`%00`) in the path or query: truncation in C and file-system APIs.
    NullByte,
    /// A control character (`%0a`, `%7f`, U+0080 to U+009F) in the path or query: log and header
    /// injection.
    ControlCharacter,
    /// A `%` not followed by two hex digits (`%zz`, `%u002e`, a trailing `%2`).
    InvalidPercentEncoding,
    /// The decoded path is not UTF-8, including overlong forms (`%c0%ae`) and surrogates.
    InvalidUtf8,
    /// A `;` path parameter (`/a;jsessionid=1`), refused only when configured.
    PathParameter,
    /// Not an origin-form path: no leading `/`, or `*` with a method other than `OPTIONS`.
    InvalidTarget,
    /// The path and query together exceed `max_uri_length` (414).
    UriTooLong,
    /// The query exceeds `max_query_length` (414).
    QueryTooLong,
    /// The method is not in the allow-list (501, with `Allow`).
    MethodNotImplemented,
    /// The decoded path matches a configured deny pattern (404).
    DeniedPath,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 15] = [
        Self::DotSegment,
        Self::EncodedSlash,
        Self::Backslash,
        Self::DoubleSlash,
        Self::DoubleEncoding,
        Self::NullByte,
        Self::ControlCharacter,
        Self::InvalidPercentEncoding,
        Self::InvalidUtf8,
        Self::PathParameter,
        Self::InvalidTarget,
        Self::UriTooLong,
        Self::QueryTooLong,
        Self::MethodNotImplemented,
        Self::DeniedPath,
    ];

    /// The stable name (`dot_segment`, `encoded_slash`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DotSegment => "dot_segment",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::DoubleSlash => "double_slash",
            Self::DoubleEncoding => "double_encoding",
            Self::NullByte => "null_byte",
            Self::ControlCharacter => "control_character",
            Self::InvalidPercentEncoding => "invalid_percent_encoding",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::PathParameter => "path_parameter",
            Self::InvalidTarget => "invalid_target",
            Self::UriTooLong => "uri_too_long",
            Self::QueryTooLong => "query_too_long",
            Self::MethodNotImplemented => "method_not_implemented",
            Self::DeniedPath => "denied_path",
        }
    }

    /// The reason with this stable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The status of the refusal. `DoubleSlash` answers `308` instead when redirecting is
    /// configured.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::UriTooLong | Self::QueryTooLong => StatusCode::URI_TOO_LONG,
            // RFC 9110 15.6.2: the server does not recognise (or support) the method at all.
            Self::MethodNotImplemented => StatusCode::NOT_IMPLEMENTED,
            // A denied path is a path that does not exist, as far as scanners are told.
            Self::DeniedPath => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Index into per-reason tables.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The problem `detail`: what was wrong, never the offending bytes.
    pub(crate) const fn detail(self) -> &'static str {
        match self {
            Self::DotSegment => "The path contains a '.' or '..' segment.",
            Self::EncodedSlash => "The path contains an encoded '/' or '\\' (%2F, %5C).",
            Self::Backslash => "The path contains a backslash.",
            Self::DoubleSlash => "The path contains an empty segment ('//').",
            Self::DoubleEncoding => "The path contains a percent-escape that is encoded twice.",
            Self::NullByte => "The request target contains a NUL byte.",
            Self::ControlCharacter => "The request target contains a control character.",
            Self::InvalidPercentEncoding => {
                "The request target contains an invalid percent-escape."
            }
            Self::InvalidUtf8 => "The decoded path is not valid UTF-8.",
            Self::PathParameter => "The path contains a ';' path parameter.",
            Self::InvalidTarget => "The request target is not an absolute path.",
            Self::UriTooLong => "The request target is too long.",
            Self::QueryTooLong => "The query string is too long.",
            Self::MethodNotImplemented => "The request method is not supported by this server.",
            Self::DeniedPath => "Not found.",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_round_trip_and_index_the_table() {
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert_eq!(Reason::from_name(reason.as_str()), Some(reason));
            assert!(reason.status().is_client_error() || reason == Reason::MethodNotImplemented);
        }
        assert_eq!(Reason::from_name("nope"), None);
    }
}
