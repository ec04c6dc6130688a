//! The path checker. A path of nothing but plain bytes, `.` and `/` (most paths) is checked by
//! looking behind each `/` for empty and dot segments; any other path in one pass over its raw
//! bytes, decoding percent-escapes on the fly and never materialising the decoded path.
//!
//! Every check looks at the *decoded* byte stream (what a handler, a file system or a backend
//! behind a proxy sees), so `.`, `%2e` and `%2E` are the same dot and `%c0%ae` is judged as the
//! bytes it decodes to. Segments are split on raw `/` only, because that is how the router splits
//! them; a decoded separator is either refused (the default) or, when allowed, also ends a segment
//! for the dot-segment check, so `..%2f` cannot hide a `..` from it.

use crate::{
    reason::Reason,
    swar::{HIGHS, ONES, bytes_equal, exactly_equal, word_at},
};

/// What to do with empty path segments (`//`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum DoubleSlash {
    /// Refuse with 400 (the default).
    #[default]
    Reject,
    /// Answer `308 Permanent Redirect` to the path with runs of `/` merged, query kept. The
    /// method and body are preserved by the client.
    Redirect,
    /// Let them through.
    Allow,
}

/// The compiled path rules: `true` refuses.
// Independent switches, one per configurable reason; not states of one machine.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathRules {
    pub(crate) dot_segments: bool,
    pub(crate) encoded_slashes: bool,
    pub(crate) backslashes: bool,
    pub(crate) double_slashes: DoubleSlash,
    pub(crate) double_encoding: bool,
    pub(crate) null_bytes: bool,
    pub(crate) control_characters: bool,
    pub(crate) invalid_percent_encoding: bool,
    pub(crate) invalid_utf8: bool,
    pub(crate) path_parameters: bool,
}

/// What a successful scan found that later steps need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PathScan {
    /// A `%` escape was decoded: matching deny patterns needs the decoded form.
    pub(crate) escaped: bool,
    /// An empty segment was seen and [`DoubleSlash::Redirect`] is configured.
    pub(crate) merge_slashes: bool,
}

// Byte classes of the raw path. Everything in `PLAIN` is ASCII that means nothing to any check
// except "this segment is not a dot segment".
const PLAIN: u8 = 0;
const DOT: u8 = 1;
const SLASH: u8 = 2;
const PERCENT: u8 = 3;
const BACKSLASH: u8 = 4;
const SEMICOLON: u8 = 5;
const CONTROL: u8 = 6;
const HIGH: u8 = 7;

const fn build_classes() -> [u8; 256] {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation)] // i < 256
        let b = i as u8;
        t[i] = match b {
            b'.' => DOT,
            b'/' => SLASH,
            b'%' => PERCENT,
            b'\\' => BACKSLASH,
            b';' => SEMICOLON,
            0x00..=0x1f | 0x7f => CONTROL,
            0x80..=0xff => HIGH,
            _ => PLAIN,
        };
        i += 1;
    }
    t
}

static CLASSES: [u8; 256] = build_classes();

/// The value of an ASCII hex digit.
#[inline]
pub(crate) const fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte a valid `%XY` escape at `at` (the `%`) decodes to.
#[inline]
pub(crate) fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = hex(*bytes.get(at + 1)?)?;
    let lo = hex(*bytes.get(at + 2)?)?;
    Some(hi << 4 | lo)
}

/// The index of the first byte at or after `from` that is not [`PLAIN`], or `bytes.len()`.
/// Eight bytes per step (SWAR): paths are mostly plain runs, and a table lookup per byte was the
/// largest cost of a clean request.
#[inline]
pub(crate) fn plain_run_end(bytes: &[u8], mut from: usize) -> usize {
    while from + 8 <= bytes.len() {
        let mut chunk = [0; 8];
        chunk.copy_from_slice(&bytes[from..from + 8]);
        // Little-endian, so the lowest set bit is the first byte in memory.
        let word = u64::from_le_bytes(chunk);
        let special = bytes_equal(word, b'.')
            | bytes_equal(word, b'/')
            | bytes_equal(word, b'%')
            | bytes_equal(word, b'\\')
            | bytes_equal(word, b';')
            | bytes_equal(word, 0x7f)
            // Below 0x20 (control) and at or above 0x80 (non-ASCII).
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | (word & HIGHS);
        if special != 0 {
            return from + (special.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < bytes.len() && CLASSES[usize::from(bytes[from])] == PLAIN {
        from += 1;
    }
    from
}

/// Checks a path against `rules`.
///
/// # Errors
///
/// The first problem found, scanning left to right (a dot segment is found when its segment ends).
#[inline]
pub(crate) fn check(path: &[u8], rules: &PathRules) -> Result<PathScan, Reason> {
    // Most paths hold nothing but plain bytes, `/` and `.`: no escape to decode, no character to
    // validate. For those only empty and dot segments can be wrong, and they can be found by
    // looking behind each `/`, which costs a fraction of the byte-by-byte scan.
    if has_rare_byte(path) {
        check_bytes(path, rules)
    } else {
        check_simple(path, rules)
    }
}

/// Whether `path` has a byte other than [`PLAIN`], `.` and `/`. Eight bytes per step.
#[inline]
fn has_rare_byte(path: &[u8]) -> bool {
    let mut chunks = path.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // Exact per byte is not needed here, only "any": false positives of `bytes_equal` occur
        // only above a true match.
        let rare = bytes_equal(word, b'%')
            | bytes_equal(word, b'\\')
            | bytes_equal(word, b';')
            | bytes_equal(word, 0x7f)
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | (word & HIGHS);
        if rare != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| !matches!(CLASSES[usize::from(b)], PLAIN | DOT | SLASH))
}

/// [`check`] for a path of plain bytes, `.` and `/` only: the segment after each `/` is empty
/// (`//`), a dot segment, or fine. Eight bytes per step: only a `/` followed by `/` or `.` needs a
/// closer look, and clean paths have few (`/.well-known`). Gives the same answer as
/// [`check_bytes`] for such paths (a unit test compares them exhaustively on short paths).
fn check_simple(path: &[u8], rules: &PathRules) -> Result<PathScan, Reason> {
    let mut merge_slashes = false;
    let mut base = 0;
    while base < path.len() {
        let word = word_at(path, base);
        let slashes = exactly_equal(word, b'/');
        let dots = exactly_equal(word, b'.');
        // Flags (bit 7 of byte k) for a `/` whose next byte is `/` or `.`; little-endian, so the
        // next byte's flag shifts down by 8 bits.
        let mut closer_look = slashes & ((slashes | dots) >> 8);
        if slashes >> 63 != 0 && matches!(path.get(base + 8), Some(b'/' | b'.')) {
            // The last byte's successor is in the next word.
            closer_look |= 1 << 63;
        }
        while closer_look != 0 {
            let slash = base + (closer_look.trailing_zeros() / 8) as usize;
            closer_look &= closer_look - 1;
            match &path[slash + 1..] {
                [b'/', ..] => match rules.double_slashes {
                    DoubleSlash::Reject => return Err(Reason::DoubleSlash),
                    DoubleSlash::Redirect => merge_slashes = true,
                    DoubleSlash::Allow => {}
                },
                [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
                    if rules.dot_segments =>
                {
                    return Err(Reason::DotSegment);
                }
                _ => {}
            }
        }
        base += 8;
    }
    Ok(PathScan {
        escaped: false,
        merge_slashes,
    })
}

/// [`check`] byte by byte, decoding escapes on the fly.
fn check_bytes(path: &[u8], rules: &PathRules) -> Result<PathScan, Reason> {
    let mut scan = Scanner::new(rules);
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        let class = CLASSES[usize::from(b)];
        if class == PLAIN && !scan.pending() {
            // The common case: a run of bytes no check cares about, skipped eight at a time and
            // accounted for once.
            let start = i;
            i = plain_run_end(path, i + 1);
            scan.segment_len += i - start;
            scan.other |= !scan.params;
            continue;
        }
        if class == SLASH {
            scan.separator(true, i == 0)?;
            i += 1;
            continue;
        }
        if class == DOT && !scan.pending() {
            scan.segment_len += 1;
            if !scan.params {
                scan.dots = scan.dots.saturating_add(1);
            }
            i += 1;
            continue;
        }
        match class {
            PLAIN => scan.plain(b)?,
            DOT => scan.decoded(b'.', false)?,
            SLASH => scan.separator(true, i == 0)?,
            PERCENT => match escape_at(path, i) {
                Some(decoded) => {
                    scan.escaped = true;
                    scan.decoded(decoded, true)?;
                    i += 3;
                    continue;
                }
                None if rules.invalid_percent_encoding => {
                    return Err(Reason::InvalidPercentEncoding);
                }
                // Allowed: the `%` is a literal character, not the start of an escape.
                None => scan.plain(b'%')?,
            },
            BACKSLASH if rules.backslashes => return Err(Reason::Backslash),
            // Allowed: still a separator to the systems that care, so it ends the segment.
            BACKSLASH => scan.separator(true, false)?,
            SEMICOLON => scan.semicolon()?,
            CONTROL => scan.control(b)?,
            _ => scan.decoded(b, false)?,
        }
        i += 1;
    }
    scan.end_segment()?;
    Ok(PathScan {
        escaped: scan.escaped,
        merge_slashes: scan.merge_slashes,
    })
}

/// The scanner's state between bytes.
#[allow(clippy::struct_excessive_bools)] // independent facts about the current segment
struct Scanner<'a> {
    rules: &'a PathRules,
    /// Decoded dots in the current segment before any `;`.
    dots: u8,
    /// The current segment has something other than dots before any `;`.
    other: bool,
    /// Past a `;` in the current segment: parameters do not count for the dot check, because
    /// Tomcat-style servers strip them (`..;x` is `..` to them).
    params: bool,
    /// Raw bytes in the current segment, to spot empty segments.
    segment_len: usize,
    /// UTF-8 continuation bytes still expected, and the range the next one must fall in (the
    /// narrower first ranges reject overlong forms, surrogates and code points above U+10FFFF).
    utf8_need: u8,
    utf8_low: u8,
    utf8_high: u8,
    code_point: u32,
    /// Double-encoding: 1 after a decoded `%`, 2 after a decoded `%` and one hex digit.
    pct: u8,
    escaped: bool,
    merge_slashes: bool,
}

impl<'a> Scanner<'a> {
    fn new(rules: &'a PathRules) -> Self {
        Self {
            rules,
            dots: 0,
            other: false,
            params: false,
            segment_len: 0,
            utf8_need: 0,
            utf8_low: 0x80,
            utf8_high: 0xbf,
            code_point: 0,
            pct: 0,
            escaped: false,
            merge_slashes: false,
        }
    }

    /// A UTF-8 sequence or a double-encoded escape is in progress, so the next byte matters.
    #[inline]
    fn pending(&self) -> bool {
        self.utf8_need != 0 || self.pct != 0
    }

    /// A raw ASCII byte that no check cares about, unless a UTF-8 sequence or a double-encoded
    /// escape is pending: the common case, kept to two predictable branches.
    #[inline]
    fn plain(&mut self, b: u8) -> Result<(), Reason> {
        if self.pending() {
            return self.decoded(b, false);
        }
        self.segment_len += 1;
        self.other |= !self.params;
        Ok(())
    }

    /// One decoded byte; `escaped` when it came from a `%XY` escape.
    fn decoded(&mut self, d: u8, escaped: bool) -> Result<(), Reason> {
        let rules = self.rules;
        self.segment_len += 1;
        if rules.invalid_utf8 && self.utf8(d)? {
            // A byte of a multi-byte character: not a dot, and nothing else below applies.
            self.other |= !self.params;
            self.pct = 0;
            return Ok(());
        }
        if rules.double_encoding {
            self.pct = match (self.pct, hex(d).is_some()) {
                (2, true) => return Err(Reason::DoubleEncoding),
                (1, true) => 2,
                _ => 0,
            };
            if escaped && d == b'%' {
                self.pct = 1;
            }
        }
        match d {
            0 if rules.null_bytes => return Err(Reason::NullByte),
            0x00..=0x1f | 0x7f if rules.control_characters && d != 0 => {
                return Err(Reason::ControlCharacter);
            }
            b'/' | b'\\' if escaped => {
                if rules.encoded_slashes {
                    return Err(Reason::EncodedSlash);
                }
                if d == b'\\' && rules.backslashes {
                    return Err(Reason::Backslash);
                }
                // Allowed: whatever decodes it sees a separator, so the dot check must too. Not
                // an empty-segment separator: the router sees one segment.
                return self.separator(false, false);
            }
            b';' if escaped => return self.semicolon(),
            b'.' if !self.params => self.dots = self.dots.saturating_add(1),
            _ => self.other |= !self.params,
        }
        Ok(())
    }

    /// Feeds `d` to the UTF-8 validator. `Ok(true)` when `d` is part of a multi-byte character.
    #[inline]
    fn utf8(&mut self, d: u8) -> Result<bool, Reason> {
        if self.utf8_need > 0 {
            if d < self.utf8_low || d > self.utf8_high {
                return Err(Reason::InvalidUtf8);
            }
            self.utf8_low = 0x80;
            self.utf8_high = 0xbf;
            self.code_point = self.code_point << 6 | u32::from(d & 0x3f);
            self.utf8_need -= 1;
            if self.utf8_need == 0
                && self.rules.control_characters
                && (0x80..=0x9f).contains(&self.code_point)
            {
                // C1 controls: NEL (U+0085) ends lines in some log pipelines.
                return Err(Reason::ControlCharacter);
            }
            return Ok(true);
        }
        if d < 0x80 {
            return Ok(false);
        }
        let (need, low, high, bits) = match d {
            0xc2..=0xdf => (1, 0x80, 0xbf, d & 0x1f),
            0xe0 => (2, 0xa0, 0xbf, d & 0x0f),
            0xe1..=0xec | 0xee..=0xef => (2, 0x80, 0xbf, d & 0x0f),
            0xed => (2, 0x80, 0x9f, d & 0x0f),
            0xf0 => (3, 0x90, 0xbf, d & 0x07),
            0xf1..=0xf3 => (3, 0x80, 0xbf, d & 0x07),
            0xf4 => (3, 0x80, 0x8f, d & 0x07),
            // Continuation bytes without a lead, overlong leads (0xc0, 0xc1), 0xf5 and above.
            _ => return Err(Reason::InvalidUtf8),
        };
        self.utf8_need = need;
        self.utf8_low = low;
        self.utf8_high = high;
        self.code_point = u32::from(bits);
        Ok(true)
    }

    fn semicolon(&mut self) -> Result<(), Reason> {
        if self.rules.path_parameters {
            return Err(Reason::PathParameter);
        }
        if self.utf8_need != 0 {
            // A raw `;` inside a multi-byte character (found by fuzzing: `/\xd1;\x9e`).
            return Err(Reason::InvalidUtf8);
        }
        self.segment_len += 1;
        self.params = true;
        self.pct = 0;
        Ok(())
    }

    fn control(&mut self, b: u8) -> Result<(), Reason> {
        if b == 0 && self.rules.null_bytes {
            return Err(Reason::NullByte);
        }
        if b != 0 && self.rules.control_characters {
            return Err(Reason::ControlCharacter);
        }
        self.decoded(b, false)
    }

    /// A segment separator. `raw`: a raw `/` (or an allowed raw `\`), which the router splits on,
    /// so an empty segment before it counts as `//`. `first`: the path's leading `/`.
    fn separator(&mut self, raw: bool, first: bool) -> Result<(), Reason> {
        if raw && !first && self.segment_len == 0 {
            match self.rules.double_slashes {
                DoubleSlash::Reject => return Err(Reason::DoubleSlash),
                DoubleSlash::Redirect => self.merge_slashes = true,
                DoubleSlash::Allow => {}
            }
        }
        self.end_segment()
    }

    fn end_segment(&mut self) -> Result<(), Reason> {
        if self.utf8_need != 0 {
            // A separator (or the end) in the middle of a character.
            return Err(Reason::InvalidUtf8);
        }
        if self.rules.dot_segments && !self.other && matches!(self.dots, 1 | 2) {
            return Err(Reason::DotSegment);
        }
        self.dots = 0;
        self.other = false;
        self.params = false;
        self.segment_len = 0;
        self.pct = 0;
        Ok(())
    }
}

/// `path` with runs of `/` merged: the target of a [`DoubleSlash::Redirect`].
pub(crate) fn merge_slashes(path: &str) -> String {
    let mut merged = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        merged.push(c);
    }
    merged
}

/// Writes `path` percent-decoded (invalid escapes kept as they are) with runs of `/` merged into
/// `out`, which must be at least `path.len()` long; returns the length written. Decoding never
/// lengthens a path, so the bound holds.
pub(crate) fn normalise_into(path: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < path.len() {
        let (b, width) = match path[i] {
            b'%' => escape_at(path, i).map_or((b'%', 1), |d| (d, 3)),
            b => (b, 1),
        };
        i += width;
        if b == b'/' && n > 0 && out[n - 1] == b'/' {
            continue;
        }
        out[n] = b;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const STRICT: PathRules = PathRules {
        dot_segments: true,
        encoded_slashes: true,
        backslashes: true,
        double_slashes: DoubleSlash::Reject,
        double_encoding: true,
        null_bytes: true,
        control_characters: true,
        invalid_percent_encoding: true,
        invalid_utf8: true,
        path_parameters: false,
    };

    const LENIENT: PathRules = PathRules {
        dot_segments: false,
        encoded_slashes: false,
        backslashes: false,
        double_slashes: DoubleSlash::Allow,
        double_encoding: false,
        null_bytes: false,
        control_characters: false,
        invalid_percent_encoding: false,
        invalid_utf8: false,
        path_parameters: false,
    };

    fn reason(path: &str) -> Option<Reason> {
        check(path.as_bytes(), &STRICT).err()
    }

    #[test]
    fn clean_paths_pass() {
        for path in [
            "/",
            "/a",
            "/a/",
            "/api/v1/users/123",
            "/a..b/c",
            "/.well-known/acme-challenge/x",
            "/file.tar.gz",
            "/...",
            "/.hidden",
            "/a.",
            "/%20space",
            "/caf%C3%A9",
            "/%E2%82%AC",
            "/%F0%9F%98%80",
            "/100%25",
            "/100%25x",
            "/%252",
            "/a;b=c",
            "/a/b.c/d..",
        ] {
            assert_eq!(check(path.as_bytes(), &STRICT), Ok(scan_of(path)), "{path}");
        }
    }

    fn scan_of(path: &str) -> PathScan {
        PathScan {
            escaped: path.contains('%'),
            merge_slashes: false,
        }
    }

    #[test]
    fn each_reason_is_found() {
        let cases: &[(&str, Reason)] = &[
            ("/..", Reason::DotSegment),
            ("/.", Reason::DotSegment),
            ("/a/../b", Reason::DotSegment),
            ("/a/./b", Reason::DotSegment),
            ("/%2e%2e/b", Reason::DotSegment),
            ("/%2E./b", Reason::DotSegment),
            ("/.%2e", Reason::DotSegment),
            ("/..;/admin", Reason::DotSegment),
            ("/.%3bx/admin", Reason::DotSegment),
            ("/a%2fb", Reason::EncodedSlash),
            ("/a%2F..", Reason::EncodedSlash),
            ("/a%5cb", Reason::EncodedSlash),
            ("/a\\b", Reason::Backslash),
            ("//a", Reason::DoubleSlash),
            ("/a//b", Reason::DoubleSlash),
            ("/a/%252e", Reason::DoubleEncoding),
            ("/%25%32%65", Reason::DoubleEncoding),
            ("/%2541", Reason::DoubleEncoding),
            ("/a%00b", Reason::NullByte),
            ("/a\0b", Reason::NullByte),
            ("/a%0d%0aSet-Cookie:x", Reason::ControlCharacter),
            ("/a%7f", Reason::ControlCharacter),
            ("/a%09", Reason::ControlCharacter),
            ("/a%c2%85", Reason::ControlCharacter),
            ("/a%zz", Reason::InvalidPercentEncoding),
            ("/a%2", Reason::InvalidPercentEncoding),
            ("/a%", Reason::InvalidPercentEncoding),
            ("/%u002e", Reason::InvalidPercentEncoding),
            ("/%c0%ae%c0%ae/", Reason::InvalidUtf8),
            ("/%e0%80%ae", Reason::InvalidUtf8),
            ("/%ed%a0%80", Reason::InvalidUtf8),
            ("/%f4%90%80%80", Reason::InvalidUtf8),
            ("/%ff", Reason::InvalidUtf8),
            ("/%80", Reason::InvalidUtf8),
            ("/%c3", Reason::InvalidUtf8),
            ("/%c3/", Reason::InvalidUtf8),
            ("/%c3a", Reason::InvalidUtf8),
            ("/%d1;%9e", Reason::InvalidUtf8),
            ("/%d1%3b%9e", Reason::InvalidUtf8),
        ];
        for &(path, expected) in cases {
            assert_eq!(reason(path), Some(expected), "{path}");
        }
    }

    #[test]
    fn plain_runs_end_at_the_first_special_byte() {
        for special in [b'.', b'/', b'%', b'\\', b';', 0x00, 0x1f, 0x7f, 0x80, 0xff] {
            for len in 0..24 {
                for at in 0..=len {
                    let mut bytes = vec![b'a'; len];
                    if at < len {
                        bytes[at] = special;
                    }
                    // Specials after the first must not matter.
                    bytes.extend_from_slice(b"/x.");
                    assert_eq!(plain_run_end(&bytes, 0), at, "{special:#x} {len} {at}");
                }
            }
        }
        let all: Vec<u8> = (0..=255).collect();
        for from in 0..256 {
            let expected = (from..256).find(|&i| CLASSES[i] != PLAIN).unwrap_or(256);
            assert_eq!(plain_run_end(&all, from), expected);
        }
    }

    /// Every path of up to ten bytes over `/`, `.` and `a`: the shortcut agrees with the full
    /// scan under every rule combination that matters to it.
    #[test]
    fn the_simple_check_agrees_with_the_full_scan() {
        let mut paths = vec![b"/".to_vec()];
        let mut frontier = paths.clone();
        // Up to ten bytes, so paths cross the eight-byte word boundary.
        for _ in 0..9 {
            frontier = frontier
                .iter()
                .flat_map(|p| {
                    [b'/', b'.', b'a'].map(|b| {
                        let mut next = p.clone();
                        next.push(b);
                        next
                    })
                })
                .collect();
            paths.extend(frontier.iter().cloned());
        }
        let mut rule_sets = Vec::new();
        for double_slashes in [
            DoubleSlash::Reject,
            DoubleSlash::Redirect,
            DoubleSlash::Allow,
        ] {
            for dot_segments in [true, false] {
                rule_sets.push(PathRules {
                    dot_segments,
                    double_slashes,
                    ..STRICT
                });
            }
        }
        for rules in &rule_sets {
            for path in &paths {
                assert!(!has_rare_byte(path));
                assert_eq!(
                    check_simple(path, rules),
                    check_bytes(path, rules),
                    "{} {rules:?}",
                    path.escape_ascii()
                );
            }
        }
        assert!(has_rare_byte(b"/abcdefgh/%"));
        assert!(has_rare_byte(b"/abcdefg;"));
        assert!(has_rare_byte(b"/\xc3\xa9"));
        assert!(!has_rare_byte(b"/abcdefgh/ijklmnop/q.r"));
    }

    #[test]
    fn path_parameters_are_opt_in() {
        let rules = PathRules {
            path_parameters: true,
            ..STRICT
        };
        assert_eq!(check(b"/a;b", &rules), Err(Reason::PathParameter));
        assert_eq!(check(b"/a%3bb", &rules), Err(Reason::PathParameter));
        assert!(check(b"/a;b", &STRICT).is_ok());
        assert_eq!(
            check(b"/\xd1\xaa\xd1;\x9e", &STRICT),
            Err(Reason::InvalidUtf8)
        );
    }

    #[test]
    fn allowed_separators_still_end_segments_for_the_dot_check() {
        let rules = PathRules {
            encoded_slashes: false,
            backslashes: false,
            ..STRICT
        };
        assert_eq!(check(b"/a/..%2fetc", &rules), Err(Reason::DotSegment));
        assert_eq!(check(b"/a/x%2f..", &rules), Err(Reason::DotSegment));
        assert_eq!(check(b"/a\\..\\b", &rules), Err(Reason::DotSegment));
        assert_eq!(check(b"/a%5c..%5cb", &rules), Err(Reason::DotSegment));
        assert!(check(b"/a%2fb", &rules).is_ok());
    }

    #[test]
    fn double_slashes_can_redirect_or_pass() {
        let redirect = PathRules {
            double_slashes: DoubleSlash::Redirect,
            ..STRICT
        };
        assert_eq!(
            check(b"//a//b", &redirect),
            Ok(PathScan {
                escaped: false,
                merge_slashes: true
            })
        );
        // Other problems still win over the redirect.
        assert_eq!(check(b"//a/..", &redirect), Err(Reason::DotSegment));
        assert!(
            check(
                b"/a//b",
                &PathRules {
                    double_slashes: DoubleSlash::Allow,
                    ..STRICT
                }
            )
            .is_ok()
        );
        assert_eq!(merge_slashes("//a///b/"), "/a/b/");
    }

    #[test]
    fn lenient_rules_accept_everything() {
        for path in [
            "/..", "/a%2f", "/a\\b", "//", "/%252e", "/%00", "/%zz", "/%c0%ae",
        ] {
            assert!(check(path.as_bytes(), &LENIENT).is_ok(), "{path}");
        }
    }

    #[test]
    fn normalising_decodes_and_merges() {
        let path = b"//a%2Fb//%2e%zz/%";
        let mut out = [0u8; 32];
        let n = normalise_into(path, &mut out);
        assert_eq!(&out[..n], b"/a/b/.%zz/%");
    }
}
