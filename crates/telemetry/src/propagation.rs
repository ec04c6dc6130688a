//! W3C Trace Context: strict parsing of `traceparent` and `tracestate`, extraction of the parent
//! context of a request, and injection of the current context into an outgoing request.
//!
//! The parsers follow the [W3C Trace Context] recommendation and pass every case of its official
//! test suite (w3c/trace-context `test/test.py`, `STRICT_LEVEL=2`, level 2 cases included; the
//! crate's `tests/w3c_suite.rs` runs them against a real server):
//!
//! - **`traceparent`**: `version-traceid-parentid-flags`, lowercase hex only. Version `ff` is
//!   invalid; version `00` is exactly 55 characters; a higher version is parsed by its first four
//!   fields, which must be followed by the end of the value or a `-`. An all-zero trace id or
//!   parent id is invalid. Spaces and tabs around the value (optional whitespace) are ignored.
//!   A request with two `traceparent` fields, or an invalid one, starts a new trace.
//! - **`tracestate`**: parsed only when `traceparent` is valid. Several fields are joined in
//!   order, as RFC 9110 says. Empty and whitespace-only list members are ignored. Every member
//!   must be `key=value` with a key of the spec's grammar (1 to 256 characters of `a-z`, `0-9`,
//!   `_`, `-`, `*`, `/` and `@`, starting with a letter or a digit) and a value of 1 to 256
//!   printable ASCII characters other than `,` and `=`, not ending in a space. A repeated key
//!   keeps its first (left-most) entry; the later ones are dropped, as the spec allows. More than
//!   32 members or any invalid member discards the whole `tracestate` (the `traceparent` is still
//!   used).
//! - **Length**: a valid `tracestate` longer than the limit (default 512 characters, the length
//!   the spec says every vendor should propagate) is truncated by whole entries as the spec
//!   says: entries longer than 128 characters go first, then entries from the end.
//! - **Flags**: the `sampled` flag and, for the caller's trace id, the level 2 `random` flag are
//!   propagated; other flag bits are set to zero.
//!
//! The parsed `tracestate` travels in the OpenTelemetry [`Context`] next to the span context, so
//! an outgoing request carries exactly the list that came in, even the keys OpenTelemetry's own
//! [`TraceState`] refuses (it still follows the older `tenant@system` rule: one `@`, a system id
//! of at most 13 characters). OpenTelemetry (samplers, exporters) sees the members it accepts;
//! when a sampler changes the span's `TraceState`, that one is propagated instead.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context-2/
//!
//! ```
//! use opentelemetry::trace::TraceContextExt;
//! use palisade_telemetry::propagation::{TraceParent, extract, inject, parse_tracestate};
//!
//! let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert!(parent.sampled);
//! assert_eq!(parent.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//!
//! assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
//! assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_err());
//!
//! let state = parse_tracestate(["rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"], 512).unwrap();
//! assert_eq!(state.header(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
//! // A repeated key keeps its first entry; a key with two `@` is valid.
//! let state = parse_tracestate(["foo=1,foo=2", "a@b@c=3"], 512).unwrap();
//! assert_eq!(state.header(), "foo=1,a@b@c=3");
//! assert!(parse_tracestate(["FOO=1,bar=2"], 512).is_err());
//!
//! // Extraction gives the parent context; injection writes it back (here without a child span).
//! let mut incoming = http::HeaderMap::new();
//! incoming.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03".parse().unwrap());
//! incoming.insert("tracestate", "a@b@c=3".parse().unwrap());
//! let cx = extract(&incoming, 512).unwrap();
//! assert!(cx.span().span_context().is_remote());
//! let mut outgoing = http::HeaderMap::new();
//! inject(&cx, &mut outgoing);
//! assert_eq!(outgoing["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
//! assert_eq!(outgoing["tracestate"], "a@b@c=3");
//! ```

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The default limit on the length of a propagated `tracestate`: 512 characters, the length the
/// specification says every vendor should propagate.
pub const DEFAULT_TRACESTATE_LIMIT: usize = 512;

/// The most list members a `tracestate` may have.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Entries longer than this are the first to go when a `tracestate` is truncated.
const LARGE_ENTRY: usize = 128;

/// The `sampled` trace flag.
const SAMPLED: u8 = 0x01;
/// The `random` trace flag (trace context level 2).
const RANDOM: u8 = 0x02;

/// A parsed `traceparent`: the caller's trace id, its span id (our parent), and the trace flags
/// this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id, never all zero.
    pub trace_id: TraceId,
    /// The caller's span id (the `parent-id` field), never all zero.
    pub parent_id: SpanId,
    /// The `sampled` flag.
    pub sampled: bool,
    /// The `random` flag (trace context level 2): at least the right-most 7 bytes of the trace
    /// id are random.
    pub random: bool,
}

/// Why a `traceparent` value was refused. The value itself is not kept: it is client input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTraceParent {
    /// Shorter than 55 characters, or longer than 55 with version `00`.
    Length,
    /// The version is not two lowercase hex digits followed by `-`.
    Version,
    /// Version `ff`, which the specification forbids.
    ForbiddenVersion,
    /// A field is not lowercase hex, or a separator is not `-`.
    Format,
    /// The trace id is all zero.
    ZeroTraceId,
    /// The parent id is all zero.
    ZeroParentId,
}

impl fmt::Display for InvalidTraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Length => "invalid traceparent: wrong length",
            Self::Version => "invalid traceparent: version is not two lowercase hex digits",
            Self::ForbiddenVersion => "invalid traceparent: version ff is forbidden",
            Self::Format => "invalid traceparent: fields must be lowercase hex separated by '-'",
            Self::ZeroTraceId => "invalid traceparent: all-zero trace id",
            Self::ZeroParentId => "invalid traceparent: all-zero parent id",
        })
    }
}

impl std::error::Error for InvalidTraceParent {}

/// Why a `tracestate` was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTraceState {
    /// More than 32 list members (repeated keys not counted).
    TooManyMembers,
    /// A list member is not `key=value`, or its key or value breaks the grammar.
    Member,
}

impl fmt::Display for InvalidTraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyMembers => "invalid tracestate: more than 32 list members",
            Self::Member => "invalid tracestate: a list member breaks the key=value grammar",
        })
    }
}

impl std::error::Error for InvalidTraceState {}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes lowercase hex into `out` (two characters per byte).
fn decode_hex(text: &[u8], out: &mut [u8]) -> Result<(), InvalidTraceParent> {
    debug_assert_eq!(text.len(), out.len() * 2);
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err(InvalidTraceParent::Format);
        };
        *byte = (hi << 4) | lo;
    }
    Ok(())
}

const fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

impl TraceParent {
    /// Parses a `traceparent` value strictly (see the [module documentation](self)).
    ///
    /// # Errors
    ///
    /// [`InvalidTraceParent`] naming the first problem found.
    pub fn parse(value: impl AsRef<[u8]>) -> Result<Self, InvalidTraceParent> {
        let v = trim_ows(value.as_ref());
        if v.len() < 55 {
            return Err(InvalidTraceParent::Length);
        }
        let (Some(v_hi), Some(v_lo)) = (hex_value(v[0]), hex_value(v[1])) else {
            return Err(InvalidTraceParent::Version);
        };
        if v[2] != b'-' {
            return Err(InvalidTraceParent::Version);
        }
        match (v_hi << 4) | v_lo {
            0xff => return Err(InvalidTraceParent::ForbiddenVersion),
            0x00 if v.len() != 55 => return Err(InvalidTraceParent::Length),
            // A future version: what follows the flags must start with '-'.
            _ if v.len() > 55 && v[55] != b'-' => return Err(InvalidTraceParent::Format),
            _ => {}
        }
        if v[35] != b'-' || v[52] != b'-' {
            return Err(InvalidTraceParent::Format);
        }
        let mut trace = [0u8; 16];
        decode_hex(&v[3..35], &mut trace)?;
        let mut span = [0u8; 8];
        decode_hex(&v[36..52], &mut span)?;
        let mut flags = [0u8; 1];
        decode_hex(&v[53..55], &mut flags)?;
        if trace == [0; 16] {
            return Err(InvalidTraceParent::ZeroTraceId);
        }
        if span == [0; 8] {
            return Err(InvalidTraceParent::ZeroParentId);
        }
        Ok(Self {
            trace_id: TraceId::from_bytes(trace),
            parent_id: SpanId::from_bytes(span),
            sampled: flags[0] & SAMPLED != 0,
            random: flags[0] & RANDOM != 0,
        })
    }

    /// The `traceparent` (version `00`) of a span context, if it is valid.
    pub fn of(cx: &SpanContext) -> Option<Self> {
        cx.is_valid().then(|| Self {
            trace_id: cx.trace_id(),
            parent_id: cx.span_id(),
            sampled: cx.is_sampled(),
            random: cx.trace_flags().to_u8() & RANDOM != 0,
        })
    }

    /// The trace flags: `sampled` and `random`, every other bit zero.
    pub fn trace_flags(&self) -> TraceFlags {
        TraceFlags::new(
            if self.sampled { SAMPLED } else { 0 } | if self.random { RANDOM } else { 0 },
        )
    }

    /// The value as a header (55 bytes, version `00`).
    pub fn to_header_value(&self) -> HeaderValue {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        encode_hex(&self.trace_id.to_bytes(), &mut out[3..35]);
        out[35] = b'-';
        encode_hex(&self.parent_id.to_bytes(), &mut out[36..52]);
        out[52] = b'-';
        encode_hex(&[self.trace_flags().to_u8()], &mut out[53..]);
        // Lowercase hex and dashes only: always a valid header value.
        HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Encodes `bytes` as lowercase hex into `out` (two characters per byte).
fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.trace_flags().to_u8()
        )
    }
}

/// A parsed `tracestate`: its list members in order, repeated keys dropped, truncated to the
/// length limit. Unlike OpenTelemetry's [`TraceState`], it holds every key the current grammar
/// allows (`a@b@c`, `tenant@` followed by a long system id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceStateList {
    entries: Vec<(String, String)>,
}

impl TraceStateList {
    /// The combined header value: `key=value` members joined by `,`.
    pub fn header(&self) -> String {
        let mut out = String::with_capacity(combined_len(&self.entries));
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        out
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The list members, `(key, value)`, in order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of list members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no list member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The members OpenTelemetry's [`TraceState`] accepts, in order: all of them, except keys
    /// with more than one `@` or more than 13 characters after it.
    pub fn to_trace_state(&self) -> TraceState {
        self.project().0
    }

    /// The OpenTelemetry `TraceState`, and whether it holds every member.
    fn project(&self) -> (TraceState, bool) {
        if let Ok(all) = TraceState::from_key_value(self.members()) {
            return (all, true);
        }
        let accepted = self
            .members()
            .filter(|&member| TraceState::from_key_value([member]).is_ok());
        (
            TraceState::from_key_value(accepted).unwrap_or_default(),
            false,
        )
    }
}

const fn is_key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@')
}

/// `key = ( lcalpha / DIGIT ) 0*255( keychar )`, with `keychar` a lowercase letter, a digit or
/// one of `_-*/@` (the current grammar; level 1's `tenant@system` split is gone).
fn valid_key(key: &[u8]) -> bool {
    matches!(key.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && key.len() <= 256
        && key.iter().all(|&b| is_key_char(b))
}

/// `0*255(chr) nblk-chr`: 1 to 256 printable ASCII characters without `,` or `=`, not ending in
/// a space.
fn valid_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && value.last() != Some(&b' ')
}

/// Parses the `tracestate` fields of a request, in order, and truncates the result to
/// `max_len` characters by whole entries (see the [module documentation](self)). A repeated key
/// keeps its first entry.
///
/// # Errors
///
/// [`InvalidTraceState`] when the list as a whole must be discarded.
pub fn parse_tracestate<I, V>(
    fields: I,
    max_len: usize,
) -> Result<TraceStateList, InvalidTraceState>
where
    I: IntoIterator<Item = V>,
    V: AsRef<[u8]>,
{
    let mut entries: Vec<(String, String)> = Vec::new();
    for field in fields {
        for member in field.as_ref().split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let Some(eq) = member.iter().position(|&b| b == b'=') else {
                return Err(InvalidTraceState::Member);
            };
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !valid_key(key) || !valid_value(value) {
                return Err(InvalidTraceState::Member);
            }
            // "Adding a key/value pair MUST NOT result in the same key being present multiple
            // times": the first (left-most) entry wins, the later ones are dropped.
            if entries.iter().any(|(k, _)| k.as_bytes() == key) {
                continue;
            }
            if entries.len() == MAX_TRACESTATE_MEMBERS {
                return Err(InvalidTraceState::TooManyMembers);
            }
            // Both checked to be ASCII.
            entries.push((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }
    truncate(&mut entries, max_len);
    Ok(TraceStateList { entries })
}

/// The length of the combined header: entries and the commas between them.
fn combined_len(entries: &[(String, String)]) -> usize {
    entries
        .iter()
        .map(|(k, v)| k.len() + 1 + v.len())
        .sum::<usize>()
        + entries.len().saturating_sub(1)
}

/// Removes whole entries until the combined header fits in `max_len`: entries longer than 128
/// characters first (from the right), then entries from the end.
fn truncate(entries: &mut Vec<(String, String)>, max_len: usize) {
    let mut len = combined_len(entries);
    while len > max_len {
        let large = entries
            .iter()
            .rposition(|(k, v)| k.len() + 1 + v.len() > LARGE_ENTRY);
        match large {
            Some(i) => {
                entries.remove(i);
            }
            None => {
                entries.pop();
            }
        }
        len = combined_len(entries);
    }
}

/// What an OpenTelemetry span context cannot carry from a request, kept in the [`Context`] next
/// to it (only when there is something to keep): the whole `tracestate` and the `random` flag.
#[derive(Debug)]
struct Incoming {
    trace_id: TraceId,
    random: bool,
    state: TraceStateList,
    /// The `TraceState` the remote span context got: while a span of the trace still has it
    /// (no sampler changed it), `state` is what to propagate.
    otel_state: TraceState,
}

/// The parent context of an incoming request, for `tracing_opentelemetry`'s `set_parent`: the
/// remote span context from a valid `traceparent` (with its `tracestate`, when that is valid
/// too, truncated to `max_tracestate_len`), or `None` when the request starts a new trace (no
/// `traceparent`, an invalid one, or two of them).
///
/// The span context's [`TraceState`] holds the members OpenTelemetry accepts; the context also
/// keeps the whole list and the `random` flag for [`inject`].
pub fn extract(headers: &HeaderMap, max_tracestate_len: usize) -> Option<Context> {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let value = parents.next()?;
    if parents.next().is_some() {
        return None;
    }
    let parent = TraceParent::parse(value.as_bytes()).ok()?;
    let state = if headers.contains_key(TRACESTATE) {
        parse_tracestate(
            headers
                .get_all(TRACESTATE)
                .iter()
                .map(HeaderValue::as_bytes),
            max_tracestate_len,
        )
        .unwrap_or_default()
    } else {
        TraceStateList::default()
    };
    let (otel_state, complete) = state.project();
    let remote = SpanContext::new(
        parent.trace_id,
        parent.parent_id,
        parent.trace_flags(),
        true,
        otel_state.clone(),
    );
    let cx = Context::new().with_remote_span_context(remote);
    // The SDK keeps the flags of a sampled parent but not of a dropped one, and it only holds
    // the members it accepts.
    Some(if parent.random || !complete {
        cx.with_value(Incoming {
            trace_id: parent.trace_id,
            random: parent.random,
            state,
            otel_state,
        })
    } else {
        cx
    })
}

/// Writes the span context of `cx` into `headers` as `traceparent` (and `tracestate` when not
/// empty), replacing any value there. Does nothing when `cx` has no valid span context.
///
/// Within the trace of an [`extract`]ed request, the `tracestate` is the request's whole list
/// (unless a sampler changed the span's) and the `random` flag is kept.
///
/// For HTTP clients that are not tower services (reqwest, for instance):
///
/// ```
/// use tracing_opentelemetry::OpenTelemetrySpanExt;
///
/// let mut headers = http::HeaderMap::new();
/// palisade_telemetry::propagation::inject(&tracing::Span::current().context(), &mut headers);
/// // No OpenTelemetry layer is installed here, so there is nothing to propagate.
/// assert!(headers.is_empty());
/// ```
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    let span = cx.span();
    let span_context = span.span_context();
    let Some(mut parent) = TraceParent::of(span_context) else {
        return;
    };
    let incoming = cx
        .get::<Incoming>()
        .filter(|incoming| incoming.trace_id == span_context.trace_id());
    let state = match incoming {
        Some(incoming) => {
            parent.random |= incoming.random;
            if *span_context.trace_state() == incoming.otel_state {
                incoming.state.header()
            } else {
                span_context.trace_state().header()
            }
        }
        None => span_context.trace_state().header(),
    };
    headers.insert(TRACEPARENT, parent.to_header_value());
    if state.is_empty() {
        headers.remove(TRACESTATE);
    } else if let Ok(value) = HeaderValue::from_str(&state) {
        headers.insert(TRACESTATE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_current_grammar() {
        assert!(valid_key(b"congo"));
        assert!(valid_key(&[b'z'; 256]));
        assert!(!valid_key(&[b'z'; 257]));
        assert!(valid_key(b"1abc"), "a key may start with a digit");
        assert!(valid_key(b"1tenant@vendor"));
        assert!(valid_key(b"t@1vendor"));
        assert!(valid_key(b"foo@"));
        assert!(valid_key(b"foo@@bar"));
        assert!(valid_key(b"a@b@c"));
        assert!(valid_key(format!("{}@v", "t".repeat(242)).as_bytes()));
        assert!(valid_key(format!("t@{}", "v".repeat(15)).as_bytes()));
        assert!(!valid_key(b""));
        assert!(!valid_key(b"@foo"));
        assert!(!valid_key(b"_foo"));
        assert!(!valid_key(b"Foo"));
        assert!(!valid_key(b"foo.bar"));
        assert!(!valid_key(b"foo bar"));
    }

    #[test]
    fn truncation_drops_large_entries_first_then_from_the_end() {
        let big = format!("big={}", "x".repeat(250));
        let small: Vec<String> = (0..40)
            .map(|i| format!("k{i:02}={}", "v".repeat(10)))
            .collect();
        // 20 small entries (14 chars each: 299 with commas) plus a 254-char one in the middle.
        let mut fields: Vec<String> = small[..10].to_vec();
        fields.push(big);
        fields.extend_from_slice(&small[10..20]);
        let state = parse_tracestate([fields.join(",")], 512).unwrap();
        let header = state.header();
        assert!(header.len() <= 512);
        assert!(!header.contains("big="), "the large entry goes first");
        assert_eq!(header.split(',').count(), 20, "{header}");

        // 33 chars per small entry is too much for 512 once there are 16 of them.
        let long: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "v".repeat(29)))
            .collect();
        let state = parse_tracestate([long.join(",")], 512).unwrap();
        let header = state.header();
        assert!(header.len() <= 512, "{}", header.len());
        assert!(header.starts_with("k00="), "entries go from the end");
        assert!(!header.contains("k19="));
    }

    #[test]
    fn opentelemetry_gets_the_members_it_accepts() {
        let state = parse_tracestate(["a=1,b@c@d=2,t@vvvvvvvvvvvvvvv=3,e@f=4"], 512).unwrap();
        assert_eq!(state.len(), 4);
        assert_eq!(state.get("b@c@d"), Some("2"));
        let (otel, complete) = state.project();
        assert!(!complete);
        assert_eq!(otel.header(), "a=1,e@f=4");
        let (otel, complete) = parse_tracestate(["a=1,e@f=4"], 512).unwrap().project();
        assert!(complete);
        assert_eq!(otel.header(), "a=1,e@f=4");
    }
}
