//! The whole request target: method, lengths, path, query and deny patterns, checked in that
//! order (cheapest first), with no allocation unless a request is refused.

use http::Method;

use crate::{
    deny::DenyList,
    method::MethodSet,
    path::{self, PathRules, escape_at},
    reason::Reason,
    swar::{HIGHS, ONES, bytes_equal, find},
};

/// The guard's decision about one request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Pass,
    /// Its only problem is empty segments and redirecting is configured: answer `308` with this
    /// `Location` (the path with runs of `/` merged, and the query).
    Redirect(String),
    /// Refuse it.
    Reject(Reason),
}

/// Why a request is not passed, without allocating: the redirect target is built only when the
/// response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding {
    Reject(Reason),
    MergeSlashes,
}

impl Finding {
    /// The reason for metrics and logs (`double_slash` for a redirect).
    pub(crate) fn reason(self) -> Reason {
        match self {
            Self::Reject(reason) => reason,
            Self::MergeSlashes => Reason::DoubleSlash,
        }
    }
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) path: PathRules,
    pub(crate) methods: MethodSet,
    pub(crate) max_uri_length: usize,
    pub(crate) max_query_length: usize,
    pub(crate) deny: DenyList,
}

impl Policy {
    /// Checks a request with `method`, `path` and `query` (without its `?`).
    #[inline]
    pub(crate) fn inspect(
        &self,
        method: &Method,
        path: &[u8],
        query: Option<&[u8]>,
    ) -> Result<(), Finding> {
        if !self.methods.contains(method) {
            return Err(Finding::Reject(Reason::MethodNotImplemented));
        }
        let query_len = query.map_or(0, <[u8]>::len);
        if path.len() + query.map_or(0, |q| q.len() + 1) > self.max_uri_length {
            return Err(Finding::Reject(Reason::UriTooLong));
        }
        if query_len > self.max_query_length {
            return Err(Finding::Reject(Reason::QueryTooLong));
        }
        if path.first() != Some(&b'/') {
            // `OPTIONS *` (asterisk-form) asks about the server as a whole; anything else that is
            // not an absolute path (authority-form, an empty path) has no business here.
            return if path == b"*" && *method == Method::OPTIONS && query.is_none() {
                Ok(())
            } else {
                Err(Finding::Reject(Reason::InvalidTarget))
            };
        }
        let scan = path::check(path, &self.path).map_err(Finding::Reject)?;
        if let Some(query) = query {
            self.check_query(query).map_err(Finding::Reject)?;
        }
        if !self.deny.is_empty() && self.deny.matches(path, scan.escaped || scan.merge_slashes) {
            return Err(Finding::Reject(Reason::DeniedPath));
        }
        if scan.merge_slashes {
            return Err(Finding::MergeSlashes);
        }
        Ok(())
    }

    /// NUL, control characters and malformed escapes in the query. Nothing else: queries carry
    /// encoded URLs and binary tokens legitimately, so double encoding and UTF-8 are the
    /// application's business there.
    fn check_query(&self, query: &[u8]) -> Result<(), Reason> {
        let rules = &self.path;
        let mut i = 0;
        while i < query.len() {
            i = query_run_end(query, i);
            let Some(&raw) = query.get(i) else {
                break;
            };
            let mut b = raw;
            if b == b'%' {
                match escape_at(query, i) {
                    Some(decoded) => {
                        b = decoded;
                        i += 2;
                    }
                    None if rules.invalid_percent_encoding => {
                        return Err(Reason::InvalidPercentEncoding);
                    }
                    None => {}
                }
            }
            if b == 0 && rules.null_bytes {
                return Err(Reason::NullByte);
            }
            if ((b < 0x20 && b != 0) || b == 0x7f) && rules.control_characters {
                return Err(Reason::ControlCharacter);
            }
            i += 1;
        }
        Ok(())
    }

    /// The public form of [`inspect`](Self::inspect) for a raw request target.
    pub(crate) fn verdict(&self, method: &Method, target: &[u8]) -> Verdict {
        let (path, query) = match find(target, b'?') {
            Some(q) => (&target[..q], Some(&target[q + 1..])),
            None => (target, None),
        };
        match self.inspect(method, path, query) {
            Ok(()) => Verdict::Pass,
            Err(Finding::Reject(reason)) => Verdict::Reject(reason),
            Err(Finding::MergeSlashes) => Verdict::Redirect(redirect_target(path, query)),
        }
    }
}

/// The index of the first byte at or after `from` that the query check looks at (`%`, a control
/// byte), or `query.len()`; eight bytes per step, as for paths.
#[inline]
fn query_run_end(query: &[u8], mut from: usize) -> usize {
    while from + 8 <= query.len() {
        let mut chunk = [0; 8];
        chunk.copy_from_slice(&query[from..from + 8]);
        let word = u64::from_le_bytes(chunk);
        let special = bytes_equal(word, b'%')
            | bytes_equal(word, 0x7f)
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS);
        if special != 0 {
            return from + (special.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < query.len() && query[from] != b'%' && query[from] >= 0x20 && query[from] != 0x7f {
        from += 1;
    }
    from
}

/// The `Location` of a merge-slashes redirect. `path` passed the checker, so it is ASCII or valid
/// UTF-8 unless invalid UTF-8 is allowed; lossy conversion keeps the function total anyway.
pub(crate) fn redirect_target(path: &[u8], query: Option<&[u8]>) -> String {
    let mut location = path::merge_slashes(&String::from_utf8_lossy(path));
    if let Some(query) = query {
        location.push('?');
        location.push_str(&String::from_utf8_lossy(query));
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DenyPattern, RequestGuardConfig, path::DoubleSlash};

    fn policy() -> Policy {
        RequestGuardConfig::default().compile().unwrap()
    }

    fn verdict(target: &str) -> Verdict {
        policy().verdict(&Method::GET, target.as_bytes())
    }

    #[test]
    fn query_runs_end_at_the_first_byte_that_matters() {
        let all: Vec<u8> = (0..=255).collect();
        for from in 0..256 {
            let expected = (from..256)
                .find(|&i| all[i] == b'%' || all[i] < 0x20 || all[i] == 0x7f)
                .unwrap_or(256);
            assert_eq!(query_run_end(&all, from), expected);
        }
        for len in 0..20 {
            let mut q = vec![b'q'; len];
            q.push(b'%');
            q.push(0);
            assert_eq!(query_run_end(&q, 0), len);
        }
    }

    #[test]
    fn query_rules() {
        assert_eq!(verdict("/a?q=1&b=%20x+y"), Verdict::Pass);
        assert_eq!(verdict("/a?next=%2F..%2Fadmin%252e"), Verdict::Pass);
        assert_eq!(verdict("/a?q=%00"), Verdict::Reject(Reason::NullByte));
        assert_eq!(verdict("/a?q=\0"), Verdict::Reject(Reason::NullByte));
        assert_eq!(
            verdict("/a?q=%0d%0a"),
            Verdict::Reject(Reason::ControlCharacter)
        );
        assert_eq!(
            verdict("/a?q=%7F"),
            Verdict::Reject(Reason::ControlCharacter)
        );
        assert_eq!(
            verdict("/a?q=100%"),
            Verdict::Reject(Reason::InvalidPercentEncoding)
        );
        assert_eq!(
            verdict("/a?q=%g1"),
            Verdict::Reject(Reason::InvalidPercentEncoding)
        );
    }

    #[test]
    fn lengths_methods_and_target_forms() {
        let long = format!("/{}", "a".repeat(8191));
        assert_eq!(verdict(&long), Verdict::Pass);
        assert_eq!(
            verdict(&format!("{long}a")),
            Verdict::Reject(Reason::UriTooLong)
        );
        let query = format!("/?{}", "q".repeat(4096));
        assert_eq!(verdict(&query), Verdict::Pass);
        assert_eq!(
            verdict(&format!("{query}q")),
            Verdict::Reject(Reason::QueryTooLong)
        );
        let p = policy();
        assert_eq!(
            p.verdict(&Method::TRACE, b"/"),
            Verdict::Reject(Reason::MethodNotImplemented)
        );
        assert_eq!(p.verdict(&Method::OPTIONS, b"*"), Verdict::Pass);
        assert_eq!(
            p.verdict(&Method::GET, b"*"),
            Verdict::Reject(Reason::InvalidTarget)
        );
        assert_eq!(
            p.verdict(&Method::GET, b""),
            Verdict::Reject(Reason::InvalidTarget)
        );
        assert_eq!(
            p.verdict(&Method::GET, b"a/b"),
            Verdict::Reject(Reason::InvalidTarget)
        );
    }

    #[test]
    fn deny_patterns_and_redirects() {
        let p = RequestGuardConfig {
            double_slashes: DoubleSlash::Redirect,
            deny: vec![DenyPattern::prefix("/.git")],
            ..RequestGuardConfig::default()
        }
        .compile()
        .unwrap();
        assert_eq!(
            p.verdict(&Method::GET, b"/.git/config"),
            Verdict::Reject(Reason::DeniedPath)
        );
        // The deny list sees the merged path, so `//` cannot sneak past a prefix.
        assert_eq!(
            p.verdict(&Method::GET, b"//.git/config"),
            Verdict::Reject(Reason::DeniedPath)
        );
        assert_eq!(
            p.verdict(&Method::GET, b"//a///b/?x=1"),
            Verdict::Redirect("/a/b/?x=1".into())
        );
        assert_eq!(p.verdict(&Method::GET, b"/a/b"), Verdict::Pass);
    }
}
