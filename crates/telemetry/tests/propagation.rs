//! W3C Trace Context parsing: the valid and invalid cases of the spec and of its official test
//! suite (w3c/trace-context `test/test.py`, strict level 2), and properties over arbitrary input.

use http::{HeaderMap, HeaderValue};
use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use palisade_telemetry::propagation::{
    DEFAULT_TRACESTATE_LIMIT, InvalidTraceParent, InvalidTraceState, TraceParent, extract, inject,
    parse_tracestate,
};
use proptest::prelude::*;

const T: &str = "12345678901234567890123456789012";
const P: &str = "1234567890123456";

#[test]
fn valid_traceparent_table() {
    let valid: &[(&str, bool)] = &[
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            true,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            false,
        ),
        // Only the sampled bit counts: 09 = sampled plus an unknown flag.
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
            true,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe",
            false,
        ),
        // Future versions: parsed by their first four fields.
        (
            "cc-12345678901234567890123456789012-1234567890123456-01",
            true,
        ),
        (
            "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            true,
        ),
        // Optional whitespace around the value.
        (
            " 00-12345678901234567890123456789012-1234567890123456-01",
            true,
        ),
        (
            "\t00-12345678901234567890123456789012-1234567890123456-01",
            true,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-01 ",
            true,
        ),
        (
            "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
            true,
        ),
    ];
    for (value, sampled) in valid {
        let parsed = TraceParent::parse(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(parsed.sampled, *sampled, "{value:?}");
    }
    // The level 2 random flag (02); fe has it, 09 does not.
    for (flags, sampled, random) in [
        ("02", false, true),
        ("03", true, true),
        ("fe", false, true),
        ("09", true, false),
    ] {
        let parsed = TraceParent::parse(format!("00-{T}-{P}-{flags}")).unwrap();
        assert_eq!(
            (parsed.sampled, parsed.random),
            (sampled, random),
            "{flags}"
        );
        assert_eq!(
            parsed.to_string(),
            format!("00-{T}-{P}-0{}", u8::from(sampled) | u8::from(random) << 1),
            "only the known flags are written"
        );
    }
    let parsed = TraceParent::parse(format!("00-{T}-{P}-01")).unwrap();
    assert_eq!(parsed.trace_id.to_string(), T);
    assert_eq!(parsed.parent_id.to_string(), P);
}

#[test]
#[allow(clippy::too_many_lines)] // a table, one case per line
fn invalid_traceparent_table() {
    use InvalidTraceParent as E;
    let invalid: &[(&str, E)] = &[
        ("", E::Length),
        ("00", E::Length),
        // Version 00 has exactly 55 characters.
        (
            "00-12345678901234567890123456789012-1234567890123456-01.",
            E::Length,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            E::Length,
        ),
        // A future version's flags are followed by the end or a dash.
        (
            "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            E::Format,
        ),
        (
            "ff-12345678901234567890123456789012-1234567890123456-01",
            E::ForbiddenVersion,
        ),
        (
            ".0-12345678901234567890123456789012-1234567890123456-01",
            E::Version,
        ),
        (
            "0.-12345678901234567890123456789012-1234567890123456-01",
            E::Version,
        ),
        (
            "000-12345678901234567890123456789012-1234567890123456-01",
            E::Version,
        ),
        (
            "0000-12345678901234567890123456789012-1234567890123456-01",
            E::Version,
        ),
        (
            "0-12345678901234567890123456789012-1234567890123456-01",
            E::Length,
        ),
        (
            "00-00000000000000000000000000000000-1234567890123456-01",
            E::ZeroTraceId,
        ),
        (
            "00-.2345678901234567890123456789012-1234567890123456-01",
            E::Format,
        ),
        (
            "00-1234567890123456789012345678901.-1234567890123456-01",
            E::Format,
        ),
        (
            "00-123456789012345678901234567890123-1234567890123456-01",
            E::Length,
        ),
        (
            "00-1234567890123456789012345678901-1234567890123456-01",
            E::Length,
        ),
        (
            "00-12345678901234567890123456789012-0000000000000000-01",
            E::ZeroParentId,
        ),
        (
            "00-12345678901234567890123456789012-.234567890123456-01",
            E::Format,
        ),
        (
            "00-12345678901234567890123456789012-123456789012345.-01",
            E::Format,
        ),
        (
            "00-12345678901234567890123456789012-12345678901234567-01",
            E::Length,
        ),
        (
            "00-12345678901234567890123456789012-123456789012345-01",
            E::Length,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-.0",
            E::Format,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-0.",
            E::Format,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-001",
            E::Length,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-1",
            E::Length,
        ),
        // Lowercase hex only (HEXDIGLC).
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            E::Format,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            E::Format,
        ),
        (
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            E::Version,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            E::Format,
        ),
        // Wrong separators.
        (
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            E::Version,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            E::Format,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            E::Format,
        ),
        // Whitespace inside the value.
        (
            "00-4bf92f3577b34da6a3ce929d0e0e473 -00f067aa0ba902b7-01",
            E::Format,
        ),
    ];
    for (value, expected) in invalid {
        assert_eq!(TraceParent::parse(value), Err(*expected), "{value:?}");
    }
}

fn state(fields: &[&str]) -> Result<String, InvalidTraceState> {
    parse_tracestate(fields, DEFAULT_TRACESTATE_LIMIT).map(|s| s.header())
}

#[test]
fn valid_tracestate_table() {
    // Kept, in order, with optional whitespace and empty members ignored.
    let ok: &[(&[&str], &str)] = &[
        (&["foo=1,bar=2"], "foo=1,bar=2"),
        (
            &["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        ),
        (
            &["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
            "foo=1,bar=2,rojo=1,congo=2,baz=3",
        ),
        (&["foo=1 \t , \t bar=2, \t baz=3"], "foo=1,bar=2,baz=3"),
        (&["foo=1\t \t,\t \tbar=2,\t \tbaz=3"], "foo=1,bar=2,baz=3"),
        (&[" foo=1"], "foo=1"),
        (&["\tfoo=1"], "foo=1"),
        (&["foo=1 "], "foo=1"),
        (&["\t foo=1 \t"], "foo=1"),
        (&[""], ""),
        (&["", "foo=1"], "foo=1"),
        (&["foo=1", ""], "foo=1"),
        (&[",,foo=1,,"], "foo=1"),
        // Multi-tenant keys, and every key the current grammar allows (w3c/trace-context#584).
        (&["tenant@vendor=x"], "tenant@vendor=x"),
        (&["1tenant@v=x"], "1tenant@v=x"),
        (&["1foo=1"], "1foo=1"),
        (&["t@1v=1"], "t@1v=1"),
        (&["foo@=1,bar=2"], "foo@=1,bar=2"),
        (&["foo@@bar=1,bar=2"], "foo@@bar=1,bar=2"),
        (&["foo@bar@baz=1,bar=2"], "foo@bar@baz=1,bar=2"),
        // A repeated key keeps its first entry, across fields too.
        (&["foo=1,foo=1"], "foo=1"),
        (&["foo=1,foo=2"], "foo=1"),
        (&["foo=1", "foo=1"], "foo=1"),
        (&["foo=1", "foo=2"], "foo=1"),
        (&["foo=1,bar=2,foo=3,baz=4"], "foo=1,bar=2,baz=4"),
        // A value keeps its inner and leading spaces.
        (&["foo= a b"], "foo= a b"),
    ];
    for (fields, expected) in ok {
        assert_eq!(state(fields).as_deref(), Ok(*expected), "{fields:?}");
    }
}

#[test]
fn tracestate_characters_and_limits() {
    // Every character the grammar allows.
    let key: String = ('a'..='z').chain('0'..='9').chain("_-*/".chars()).collect();
    let value: String = (0x20u8..=0x7e)
        .filter(|&b| b != b',' && b != b'=')
        .map(char::from)
        .collect();
    let member = format!("{key}={value}");
    assert_eq!(state(&[&member]).unwrap(), member);
    let vendor_member = format!("{key}@a-z0-9_-*/={value}");
    assert_eq!(state(&[&vendor_member]).unwrap(), vendor_member);

    // Limits from the test suite: keys of up to 256 characters, wherever their `@` is.
    let long_key = format!("{}=1", "z".repeat(256));
    assert_eq!(
        state(&["foo=1", &long_key]).unwrap(),
        format!("foo=1,{long_key}")
    );
    let too_long_key = format!("{}=1", "z".repeat(257));
    assert_eq!(
        state(&["foo=1", &too_long_key]),
        Err(InvalidTraceState::Member)
    );
    for key in [
        format!("{}@{}", "t".repeat(241), "v".repeat(14)),
        format!("{}@v", "t".repeat(242)),
        format!("t@{}", "v".repeat(15)),
    ] {
        let member = format!("{key}=1");
        assert_eq!(
            state(&["foo=1", &member]).unwrap(),
            format!("foo=1,{member}")
        );
    }
    let too_long_vendor_key = format!("{}@{}=1", "t".repeat(242), "v".repeat(14));
    assert_eq!(
        state(&["foo=1", &too_long_vendor_key]),
        Err(InvalidTraceState::Member)
    );
    let long_value = format!("foo={}", "v".repeat(256));
    assert!(parse_tracestate([&long_value], 8192).is_ok());
    let too_long_value = format!("foo={}", "v".repeat(257));
    assert_eq!(state(&[&too_long_value]), Err(InvalidTraceState::Member));

    // 32 members pass, 33 discard the whole list.
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let fields32 = [
        members[..10].join(","),
        members[10..20].join(","),
        members[20..32].join(","),
    ];
    let fields32: Vec<&str> = fields32.iter().map(String::as_str).collect();
    assert_eq!(state(&fields32).unwrap().split(',').count(), 32);
    let fields33 = [members[..10].join(","), members[10..33].join(",")];
    let fields33: Vec<&str> = fields33.iter().map(String::as_str).collect();
    assert_eq!(state(&fields33), Err(InvalidTraceState::TooManyMembers));
    // Repeated keys do not count toward the 32.
    let with_repeats = [members[..32].join(","), members[..5].join(",")];
    let with_repeats: Vec<&str> = with_repeats.iter().map(String::as_str).collect();
    assert_eq!(state(&with_repeats).unwrap(), members[..32].join(","));
}

#[test]
fn invalid_tracestate_table() {
    use InvalidTraceState as E;
    let invalid: &[(&[&str], E)] = &[
        (&["foo =1"], E::Member),
        (&["FOO=1"], E::Member),
        (&["foo.bar=1"], E::Member),
        (&["@foo=1,bar=2"], E::Member),
        (&["_foo=1"], E::Member),
        (&["foo=bar=baz"], E::Member),
        (&["foo=,bar=3"], E::Member),
        (&["foo"], E::Member),
        (&["=1"], E::Member),
        // An invalid member discards the list even after a repeated key.
        (&["foo=1,foo=2,BAR=3"], E::Member),
        (&["foo=a\u{7f}"], E::Member),
        (&["foo=é"], E::Member),
        (&["foo=a\tb"], E::Member),
    ];
    for (fields, expected) in invalid {
        assert_eq!(state(fields), Err(*expected), "{fields:?}");
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn remote(cx: &Context) -> SpanContext {
    cx.span().span_context().clone()
}

#[test]
fn extraction_from_request_headers() {
    let parent = format!("00-{T}-{P}-01");
    let cx = remote(&extract(&headers(&[("TraceParent", &parent)]), 512).unwrap());
    assert!(cx.is_remote() && cx.is_sampled() && cx.is_valid());
    assert_eq!(cx.trace_id().to_string(), T);
    assert_eq!(cx.span_id().to_string(), P);

    // Two traceparent fields: a new trace.
    assert!(
        extract(
            &headers(&[("traceparent", &parent), ("traceparent", &parent)]),
            512
        )
        .is_none()
    );
    // An invalid one: a new trace.
    assert!(extract(&headers(&[("traceparent", "00-abc")]), 512).is_none());
    // tracestate without traceparent: nothing.
    assert!(extract(&headers(&[("tracestate", "foo=1")]), 512).is_none());
    // tracestate fields are combined; an invalid tracestate keeps the traceparent.
    let cx = remote(
        &extract(
            &headers(&[
                ("traceparent", &parent),
                ("tracestate", "foo=1"),
                ("TRACESTATE", "bar=2"),
            ]),
            512,
        )
        .unwrap(),
    );
    assert_eq!(cx.trace_state().header(), "foo=1,bar=2");
    let cx = remote(
        &extract(
            &headers(&[("traceparent", &parent), ("tracestate", "FOO=1")]),
            512,
        )
        .unwrap(),
    );
    assert_eq!(cx.trace_state().header(), "");
    assert_eq!(cx.trace_id().to_string(), T);
}

fn with_span(cx: SpanContext) -> Context {
    Context::new().with_remote_span_context(cx)
}

#[test]
fn injection_writes_version_00_and_only_the_known_flags() {
    let cx = SpanContext::new(
        TraceId::from_hex(T).unwrap(),
        SpanId::from_hex(P).unwrap(),
        TraceFlags::new(0x0b),
        false,
        TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap(),
    );
    let mut map = headers(&[("traceparent", "stale"), ("tracestate", "stale=1")]);
    inject(&with_span(cx), &mut map);
    assert_eq!(map["traceparent"], format!("00-{T}-{P}-03").as_str());
    assert_eq!(map["tracestate"], "congo=t61rcWkgMzE");

    let unsampled = SpanContext::new(
        TraceId::from_hex(T).unwrap(),
        SpanId::from_hex(P).unwrap(),
        TraceFlags::default(),
        false,
        TraceState::NONE,
    );
    inject(&with_span(unsampled), &mut map);
    assert_eq!(map["traceparent"], format!("00-{T}-{P}-00").as_str());
    assert!(
        !map.contains_key("tracestate"),
        "an empty tracestate is not sent"
    );

    let mut empty = HeaderMap::new();
    inject(&Context::new(), &mut empty);
    assert!(
        empty.is_empty(),
        "nothing to propagate from an invalid context"
    );
}

/// A child span of the extracted context, as the SDK makes one: same trace, new span id, flags
/// of the decision (a dropped span loses them all), the parent's `TraceState` unless a sampler
/// changed it.
fn child(parent: &Context, flags: u8, state: Option<TraceState>) -> Context {
    let remote = remote(parent);
    let state = state.unwrap_or_else(|| remote.trace_state().clone());
    let span = SpanContext::new(
        remote.trace_id(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::new(flags),
        false,
        state,
    );
    parent.with_remote_span_context(span)
}

#[test]
fn the_whole_tracestate_and_the_random_flag_reach_the_next_hop() {
    let parent = format!("00-{T}-{P}-02");
    let incoming = headers(&[
        ("traceparent", &parent),
        ("tracestate", "foo=1,a@b@c=2,foo=3"),
        ("tracestate", "t@vvvvvvvvvvvvvvv=4,bar=5"),
    ]);
    let cx = extract(&incoming, 512).unwrap();
    // OpenTelemetry's TraceState refuses two of the keys: it gets the others.
    assert_eq!(remote(&cx).trace_state().header(), "foo=1,bar=5");
    assert_eq!(remote(&cx).trace_flags(), TraceFlags::new(0x02));

    // An unsampled child (the SDK drops its flags): the whole list and the random flag travel.
    let mut out = HeaderMap::new();
    inject(&child(&cx, 0x00, None), &mut out);
    assert_eq!(
        out["traceparent"],
        format!("00-{T}-00f067aa0ba902b7-02").as_str()
    );
    assert_eq!(out["tracestate"], "foo=1,a@b@c=2,t@vvvvvvvvvvvvvvv=4,bar=5");

    // A sampler that rewrote the TraceState wins.
    let rewritten = TraceState::from_key_value([("ot", "th:8")]).unwrap();
    inject(&child(&cx, 0x01, Some(rewritten)), &mut out);
    assert_eq!(
        out["traceparent"],
        format!("00-{T}-00f067aa0ba902b7-03").as_str()
    );
    assert_eq!(out["tracestate"], "ot=th:8");

    // Another trace under the same context (a new root) does not inherit either.
    let other = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex(P).unwrap(),
        TraceFlags::default(),
        false,
        TraceState::NONE,
    );
    inject(&cx.with_remote_span_context(other), &mut out);
    assert!(out["traceparent"].to_str().unwrap().ends_with("-00"));
    assert!(!out.contains_key("tracestate"));

    // Nothing OpenTelemetry cannot carry: the span context alone says it all.
    let plain = extract(
        &headers(&[
            ("traceparent", &format!("00-{T}-{P}-01")),
            ("tracestate", "foo=1"),
        ]),
        512,
    )
    .unwrap();
    inject(&child(&plain, 0x01, None), &mut out);
    assert_eq!(out["tracestate"], "foo=1");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn traceparent_parsing_never_panics(input in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = TraceParent::parse(&input);
    }

    #[test]
    fn near_miss_traceparents_never_panic(
        input in "[0-9a-fA-F\\- \\t.]{50,60}"
    ) {
        if let Ok(parsed) = TraceParent::parse(&input) {
            prop_assert_ne!(parsed.trace_id, TraceId::INVALID);
            prop_assert_ne!(parsed.parent_id, SpanId::INVALID);
        }
    }

    #[test]
    fn valid_traceparents_round_trip(
        trace in any::<u128>(),
        span in any::<u64>(),
        sampled in any::<bool>(),
        random in any::<bool>(),
    ) {
        prop_assume!(trace != 0 && span != 0);
        let parent = TraceParent {
            trace_id: TraceId::from(trace),
            parent_id: SpanId::from(span),
            sampled,
            random,
        };
        let text = parent.to_string();
        prop_assert_eq!(text.len(), 55);
        let value = parent.to_header_value();
        prop_assert_eq!(value.to_str().unwrap(), text.as_str());
        prop_assert_eq!(TraceParent::parse(&text), Ok(parent));
    }

    #[test]
    fn tracestate_parsing_never_panics_and_respects_the_limits(
        fields in proptest::collection::vec("[a-z0-9@=,_*/ \\t\\-]{0,80}", 0..6),
        limit in 512usize..2048,
    ) {
        if let Ok(state) = parse_tracestate(&fields, limit) {
            let header = state.header();
            prop_assert!(header.len() <= limit);
            prop_assert!(header.is_empty() || header.split(',').count() <= 32);
        }
    }

    #[test]
    fn tracestate_bytes_never_panic(fields in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4)) {
        let _ = parse_tracestate(&fields, DEFAULT_TRACESTATE_LIMIT);
    }

    #[test]
    fn extraction_never_panics(values in proptest::collection::vec(("traceparent|tracestate", "[ -~]{0,100}"), 0..5)) {
        let mut map = HeaderMap::new();
        for (name, value) in &values {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
            }
        }
        if let Some(cx) = extract(&map, DEFAULT_TRACESTATE_LIMIT) {
            let cx = remote(&cx);
            prop_assert!(cx.is_valid() && cx.is_remote());
        }
    }
}
