//! Arbitrary bytes as a request target, through the strict default guard and a lenient one:
//! nothing may panic, and an accepted path must decode to nothing the guard keeps out.

#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use palisade_request_guard::{Action, DoubleSlash, RequestGuardLayer, Verdict};

fn decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fuzz_target!(|target: &[u8]| {
    thread_local! {
        static STRICT: RequestGuardLayer = RequestGuardLayer::new();
        static LENIENT: RequestGuardLayer = RequestGuardLayer::builder()
            .dot_segments(Action::Allow)
            .encoded_slashes(Action::Allow)
            .backslashes(Action::Allow)
            .double_slashes(DoubleSlash::Redirect)
            .double_encoding(Action::Allow)
            .invalid_percent_encoding(Action::Allow)
            .invalid_utf8(Action::Allow)
            .build()
            .expect("valid configuration");
    }
    let _ = LENIENT.with(|guard| guard.check(&Method::GET, target));
    let verdict = STRICT.with(|guard| guard.check(&Method::GET, target));
    if verdict != Verdict::Pass || target.contains(&b'?') || target == b"*" {
        return;
    }
    // The oracle: decoded until nothing changes, no dot segment, control byte or backslash.
    let mut full = target.to_vec();
    for _ in 0..8 {
        let next = decode(&full);
        if next == full {
            break;
        }
        full = next;
    }
    assert!(std::str::from_utf8(&decode(target)).is_ok());
    assert!(!full.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\'));
    for segment in full.split(|&b| b == b'/') {
        let name = segment.split(|&b| b == b';').next().unwrap_or_default();
        assert!(name != b"." && name != b"..");
    }
});
