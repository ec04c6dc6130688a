//! Property tests of the checker: no input panics, nothing accepted decodes to anything the
//! guard promises to keep out, and well-formed paths are never refused.

use std::fmt::Write;

use http::Method;
use palisade_request_guard::{Action, DoubleSlash, RequestGuardLayer, Verdict};
use proptest::prelude::*;

/// Pieces that hostile paths are made of, so random paths hit the interesting states often.
/// Harmless pieces are drawn more often, so that a path carries one or two risky pieces and the
/// oracle sees accepted paths that came close.
const HARMLESS: &[&[u8]] = &[
    b"/",
    b"/",
    b".",
    b"a",
    b"b",
    b"2",
    b"e",
    b"f",
    b"5",
    b"c",
    b"0",
    b"\xc3\xa9",
];
const RISKY: &[&[u8]] = &[
    b"..",
    b"%2e",
    b"%2E",
    b"%2f",
    b"%2F",
    b"%5c",
    b"%5C",
    b"\\",
    b";",
    b"%3b",
    b"%25",
    b"%",
    b"%2",
    b"%32",
    b"%65",
    b"%00",
    b"%0a",
    b"%7f",
    b"%c0",
    b"%ae",
    b"%c2",
    b"%85",
    b"%e2",
    b"%82",
    b"%ac",
    b"%ed",
    b"%a0",
    b"%f0",
    b"%9f",
    b"%ff",
    b"%3f",
    b"//",
    b"\xd1",
    b"\x9e",
    b"\xc3",
    b"\xe2\x82",
    b"\x80",
];

fn hostile_path() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => proptest::sample::select(HARMLESS),
        1 => proptest::sample::select(RISKY),
    ];
    proptest::collection::vec(token, 0..12).prop_map(|tokens| {
        let mut path = b"/".to_vec();
        for token in tokens {
            path.extend_from_slice(token);
        }
        path
    })
}

/// One percent-decoding pass; malformed escapes stay as they are.
fn decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            #[allow(clippy::cast_possible_truncation)] // two hex digits
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Decodes until nothing changes: what a chain of careless decoders could end up with.
fn fully_decoded(path: &[u8]) -> Vec<u8> {
    let mut current = path.to_vec();
    for _ in 0..8 {
        let next = decode(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn assert_harmless(path: &[u8]) {
    let once = decode(path);
    assert!(std::str::from_utf8(&once).is_ok(), "not UTF-8 once decoded");
    let full = fully_decoded(path);
    assert!(
        !full.iter().any(|&b| b < 0x20 || b == 0x7f),
        "control byte in {:?}",
        full.escape_ascii().to_string()
    );
    assert!(!full.contains(&b'\\'), "backslash");
    if let Ok(text) = std::str::from_utf8(&full) {
        assert!(
            !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
            "C1 control"
        );
    }
    for segment in full.split(|&b| b == b'/' || b == b'\\') {
        let name = segment
            .iter()
            .position(|&b| b == b';')
            .map_or(segment, |end| &segment[..end]);
        assert!(name != b"." && name != b"..", "dot segment");
    }
    assert!(
        !path.windows(2).any(|w| w == b"//"),
        "empty segment in the raw path"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(target in proptest::collection::vec(any::<u8>(), 0..96)) {
        let strict = RequestGuardLayer::new();
        let lenient = RequestGuardLayer::builder()
            .dot_segments(Action::Allow)
            .encoded_slashes(Action::Allow)
            .backslashes(Action::Allow)
            .double_slashes(DoubleSlash::Redirect)
            .double_encoding(Action::Allow)
            .null_bytes(Action::Allow)
            .control_characters(Action::Allow)
            .invalid_percent_encoding(Action::Allow)
            .invalid_utf8(Action::Allow)
            .path_parameters(Action::Reject)
            .deny(palisade_request_guard::DenyPattern::contains("x"))
            .build()
            .unwrap();
        let _ = strict.check(&Method::GET, &target);
        let _ = lenient.check(&Method::GET, &target);
        let _ = lenient.check(&Method::OPTIONS, &target);
    }

    #[test]
    fn accepted_hostile_looking_paths_decode_to_nothing_harmful(path in hostile_path()) {
        let guard = RequestGuardLayer::new();
        // Only the path: the query is application data with its own, narrower rules.
        if guard.check(&Method::GET, &path) == Verdict::Pass {
            assert_harmless(&path);
        }
    }

    #[test]
    fn accepted_arbitrary_paths_decode_to_nothing_harmful(
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut path = b"/".to_vec();
        path.extend(tail.into_iter().filter(|&b| b != b'?'));
        if RequestGuardLayer::new().check(&Method::GET, &path) == Verdict::Pass {
            assert_harmless(&path);
        }
    }

    #[test]
    fn an_ascii_byte_inside_a_multibyte_character_is_refused(
        c in any::<char>().prop_filter("multi-byte", |c| c.len_utf8() > 1),
        split in 1usize..4,
        // Not `?`, which would start the query.
        ascii in (0u8..0x80).prop_filter("not '?'", |&b| b != b'?'),
        encoded in any::<bool>(),
    ) {
        let mut buf = [0; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let split = split.min(bytes.len() - 1);
        let push = |path: &mut Vec<u8>, b: u8| {
            if encoded {
                path.extend_from_slice(format!("%{b:02x}").as_bytes());
            } else {
                path.push(b);
            }
        };
        let mut path = b"/a".to_vec();
        bytes[..split].iter().for_each(|&b| push(&mut path, b));
        path.push(ascii);
        bytes[split..].iter().for_each(|&b| push(&mut path, b));
        let verdict = RequestGuardLayer::new().check(&Method::GET, &path);
        prop_assert!(
            matches!(verdict, Verdict::Reject(_)),
            "{} passed: {:?}",
            path.escape_ascii(),
            verdict
        );
    }

    #[test]
    fn well_formed_paths_always_pass(
        segments in proptest::collection::vec("[^%/\\\\;\\x00-\\x1f\\x7f-\\u{9f}]{1,6}", 0..6),
        encode in any::<bool>(),
    ) {
        let segments: Vec<String> = segments
            .into_iter()
            .filter(|s| s != "." && s != "..")
            .collect();
        let mut path = String::new();
        for segment in &segments {
            path.push('/');
            if encode {
                for b in segment.bytes() {
                    let _ = write!(path, "%{b:02X}");
                }
            } else {
                for c in segment.chars() {
                    // What a client would send: the path grammar's characters as they are,
                    // everything else encoded.
                    if c.is_ascii_alphanumeric() || "-._~!$&'()*+,=:@".contains(c) {
                        path.push(c);
                    } else {
                        let mut buf = [0; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            let _ = write!(path, "%{b:02X}");
                        }
                    }
                }
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        prop_assert_eq!(RequestGuardLayer::new().check(&Method::GET, path.as_bytes()), Verdict::Pass, "{}", path);
    }
}
