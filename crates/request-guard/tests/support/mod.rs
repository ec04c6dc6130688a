//! Shared by the integration tests: the corpus files and a counting application.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{Router, routing::get};
use palisade_request_guard::Reason;

/// One corpus line.
#[derive(Debug, Clone)]
pub struct Case {
    pub line: usize,
    pub target: Vec<u8>,
    pub expected: Option<Reason>,
}

impl Case {
    /// The target for assertion messages.
    pub fn shown(&self) -> String {
        format!("line {}: {}", self.line, self.target.escape_ascii())
    }
}

/// Reads `tests/corpus/<name>`: `<target> [<reason>]` per line, `\xNN` for raw bytes.
pub fn corpus(name: &str) -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let mut fields = l.split(' ').filter(|f| !f.is_empty());
            let target = unescape(fields.next().expect("a target"));
            let expected = fields.next().map(|name| {
                Reason::from_name(name)
                    .unwrap_or_else(|| panic!("{name:?} on line {} is not a reason", i + 1))
            });
            assert!(fields.next().is_none(), "line {}: extra fields", i + 1);
            Case {
                line: i + 1,
                target,
                expected,
            }
        })
        .collect()
}

/// `\xNN` to the byte 0xNN; everything else literal.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(hex) = bytes.get(i + 2..i + 4)
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// An application whose every handler counts the requests that reach it: a catch-all fallback
/// and a GET-only route (for the router's own 405).
pub fn counting_app() -> (Router, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let (a, b) = (hits.clone(), hits.clone());
    let app = Router::new()
        .route(
            "/only-get",
            get(move || {
                a.fetch_add(1, Ordering::SeqCst);
                async { "got" }
            }),
        )
        .fallback(move || {
            b.fetch_add(1, Ordering::SeqCst);
            async { "reached" }
        });
    (app, hits)
}
