//! Deny patterns: plain substring, prefix or whole-segment matches on the decoded path, for
//! deployments that want to refuse scanner paths (`/.git`, `/.env`, `wp-admin`) before they reach
//! the application. No regular expressions: the three shapes cover the lists people keep, and a
//! regex engine would cost a dependency and a per-request automaton walk.

use std::borrow::Cow;

use palisade_core::ConfigError;

use crate::path::normalise_into;

/// One deny pattern, matched ASCII-case-insensitively against the percent-decoded path with runs
/// of `/` merged (so `//.GIT` and `/%2egit` match `prefix = "/.git"`).
///
/// In a configuration file: `{ prefix = "/.git" }`, `{ contains = "wp-admin" }`,
/// `{ segment = ".env" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum DenyPattern {
    /// The path starts with this (it must start with `/`).
    Prefix(Cow<'static, str>),
    /// The path contains this anywhere.
    Contains(Cow<'static, str>),
    /// Some segment of the path is exactly this (ignoring `;` parameters); it must not contain
    /// `/` or `\`.
    Segment(Cow<'static, str>),
}

impl DenyPattern {
    /// Paths starting with `prefix`.
    pub fn prefix(prefix: impl Into<Cow<'static, str>>) -> Self {
        Self::Prefix(prefix.into())
    }

    /// Paths containing `needle`.
    pub fn contains(needle: impl Into<Cow<'static, str>>) -> Self {
        Self::Contains(needle.into())
    }

    /// Paths with a segment equal to `segment`.
    pub fn segment(segment: impl Into<Cow<'static, str>>) -> Self {
        Self::Segment(segment.into())
    }

    fn text(&self) -> &str {
        match self {
            Self::Prefix(s) | Self::Contains(s) | Self::Segment(s) => s,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let (kind, text) = match self {
            Self::Prefix(s) => ("prefix", s),
            Self::Contains(s) => ("contains", s),
            Self::Segment(s) => ("segment", s),
        };
        let problem = if text.is_empty() || text.len() > 1024 {
            Some("must be 1 to 1024 bytes")
        } else if text.bytes().any(|b| b.is_ascii_control()) {
            Some("must not contain control characters")
        } else if kind == "prefix" && !text.starts_with('/') {
            Some("must start with '/'")
        } else if kind == "segment" && text.contains(['/', '\\']) {
            Some("must not contain '/' or '\\'")
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(ConfigError::new(kind, p)))
    }
}

/// The compiled patterns, lower-cased once.
#[derive(Debug, Clone, Default)]
pub(crate) struct DenyList {
    prefixes: Box<[Box<[u8]>]>,
    contains: Box<[Box<[u8]>]>,
    segments: Box<[Box<[u8]>]>,
}

/// Paths up to this long are normalised on the stack.
const STACK: usize = 512;

impl DenyList {
    pub(crate) fn compile(patterns: &[DenyPattern]) -> Result<Self, ConfigError> {
        let (mut prefixes, mut contains, mut segments) = (Vec::new(), Vec::new(), Vec::new());
        for (i, pattern) in patterns.iter().enumerate() {
            pattern
                .check()
                .map_err(|e| e.within(&format!("deny[{i}]")))?;
            let lower = pattern.text().to_ascii_lowercase().into_bytes().into();
            match pattern {
                DenyPattern::Prefix(_) => prefixes.push(lower),
                DenyPattern::Contains(_) => contains.push(lower),
                DenyPattern::Segment(_) => segments.push(lower),
            }
        }
        Ok(Self {
            prefixes: prefixes.into(),
            contains: contains.into(),
            segments: segments.into(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.contains.is_empty() && self.segments.is_empty()
    }

    /// Whether `path` matches. `normalise`: the path has escapes or empty segments, so it must be
    /// decoded and merged first (on the stack when it is short, which paths usually are).
    pub(crate) fn matches(&self, path: &[u8], normalise: bool) -> bool {
        if !normalise {
            return self.matches_normalised(path);
        }
        let mut stack = [0u8; STACK];
        let mut heap = Vec::new();
        let out: &mut [u8] = if path.len() <= STACK {
            &mut stack[..path.len()]
        } else {
            heap.resize(path.len(), 0);
            &mut heap
        };
        let n = normalise_into(path, out);
        self.matches_normalised(&out[..n])
    }

    fn matches_normalised(&self, path: &[u8]) -> bool {
        self.prefixes
            .iter()
            .any(|p| path.len() >= p.len() && path[..p.len()].eq_ignore_ascii_case(p))
            || self.contains.iter().any(|needle| {
                path.windows(needle.len())
                    .any(|window| window.eq_ignore_ascii_case(needle))
            })
            || (!self.segments.is_empty()
                && path.split(|&b| b == b'/' || b == b'\\').any(|segment| {
                    let name = segment
                        .iter()
                        .position(|&b| b == b';')
                        .map_or(segment, |end| &segment[..end]);
                    self.segments.iter().any(|s| name.eq_ignore_ascii_case(s))
                }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> DenyList {
        DenyList::compile(&[
            DenyPattern::prefix("/.git"),
            DenyPattern::contains("wp-admin"),
            DenyPattern::segment(".env"),
        ])
        .unwrap()
    }

    #[test]
    fn each_shape_matches_case_insensitively_after_decoding() {
        let list = list();
        for path in [
            "/.git/config",
            "/.GIT/HEAD",
            "//.git/config",
            "/%2egit/config",
            "/blog/WP-Admin/x",
            "/app/.env",
            "/app/.ENV;x",
            "/app/.env/",
        ] {
            assert!(list.matches(path.as_bytes(), true), "{path}");
        }
        for path in ["/git", "/a/.gitignore", "/wp", "/app/.envrc", "/app/x.env"] {
            assert!(!list.matches(path.as_bytes(), true), "{path}");
        }
        assert!(!DenyList::compile(&[]).unwrap().matches(b"/x", false));
        assert!(DenyList::compile(&[]).unwrap().is_empty());
    }

    #[test]
    fn long_paths_are_normalised_on_the_heap() {
        let path = format!("/{}/%2egit", "a".repeat(2 * STACK));
        let list = DenyList::compile(&[DenyPattern::contains("/.git")]).unwrap();
        assert!(list.matches(path.as_bytes(), true));
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_entry() {
        let key = |p: DenyPattern| {
            DenyList::compile(&[DenyPattern::prefix("/ok"), p])
                .unwrap_err()
                .key()
                .to_owned()
        };
        assert_eq!(key(DenyPattern::prefix("no-slash")), "deny[1].prefix");
        assert_eq!(key(DenyPattern::contains("")), "deny[1].contains");
        assert_eq!(key(DenyPattern::segment("a/b")), "deny[1].segment");
        assert_eq!(key(DenyPattern::contains("a\nb")), "deny[1].contains");
    }
}
