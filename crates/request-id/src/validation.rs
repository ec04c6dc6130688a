//! What makes an incoming request id acceptable: a character set and a maximum length.

use std::fmt;

use palisade_core::ConfigError;

/// The default character set, `[A-Za-z0-9._:-]`: UUIDs, ULIDs, KSUIDs, hex trace ids, AWS and
/// Heroku style ids all fit, while spaces, quotes, commas, control characters and anything that
/// could break a log line or a header list do not.
pub const DEFAULT_CHARSET: &str = "A-Za-z0-9._:-";

/// The default maximum length of an incoming id, in bytes.
pub const DEFAULT_MAX_LENGTH: usize = 128;

/// The largest `max_length` a configuration may set. Ids are copied into every log line: a
/// kilobyte is already generous.
pub const MAX_MAX_LENGTH: usize = palisade_core::RequestId::MAX_LEN;

/// A set of ASCII characters allowed in request ids, parsed from a regex-like class body such as
/// `A-Za-z0-9._:-` (ranges `a-z`, single characters, and `-` taken literally when it comes first
/// or last).
///
/// Only visible ASCII (`!` to `~`) may be allowed, and never `,`: a comma separates the values of
/// a repeated header, so an id containing one is ambiguous once a proxy has joined two headers.
///
/// ```
/// use palisade_request_id::Charset;
///
/// let hex = Charset::parse("0-9a-f").unwrap();
/// assert!(hex.contains(b'c'));
/// assert!(!hex.contains(b'C'));
/// assert!(Charset::parse("a-z ").is_err()); // space
/// assert!(Charset::parse("z-a").is_err()); // reversed range
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Charset {
    /// `allowed[b]` when byte `b` is allowed: one load per byte, no branch.
    allowed: [bool; 256],
}

impl Charset {
    /// `[A-Za-z0-9._:-]`, the default.
    pub const DEFAULT: Self = Self::empty()
        .with_range(b'A', b'Z')
        .with_range(b'a', b'z')
        .with_range(b'0', b'9')
        .with_range(b'.', b'.')
        .with_range(b'_', b'_')
        .with_range(b':', b':')
        .with_range(b'-', b'-');

    const fn empty() -> Self {
        Self {
            allowed: [false; 256],
        }
    }

    const fn with_range(mut self, from: u8, to: u8) -> Self {
        let mut b = from;
        while b <= to {
            self.allowed[b as usize] = true;
            b += 1;
        }
        self
    }

    /// Parses a class body such as `A-Za-z0-9._:-`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (key `charset`) when the spec is empty, contains a character outside
    /// visible ASCII or a comma, or has a reversed range such as `z-a`.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let err = |problem: String| ConfigError::new("charset", problem);
        if spec.is_empty() {
            return Err(err("must allow at least one character".into()));
        }
        let bytes = spec.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if !(0x21..=0x7e).contains(&b) {
                return Err(err(format!(
                    "only visible ASCII characters may be allowed (byte {i} is 0x{b:02x})"
                )));
            }
            if b == b',' {
                return Err(err(
                    "must not allow ',' (it separates the values of a repeated header)".into(),
                ));
            }
        }
        let mut set = Self::empty();
        let mut i = 0;
        while i < bytes.len() {
            let from = bytes[i];
            // `x-y` is a range unless the `-` is the last character.
            if i + 2 < bytes.len() && bytes[i + 1] == b'-' {
                let to = bytes[i + 2];
                if from > to {
                    return Err(err(format!(
                        "range {}-{} is reversed",
                        char::from(from),
                        char::from(to)
                    )));
                }
                set = set.with_range(from, to);
                i += 3;
            } else {
                set = set.with_range(from, from);
                i += 1;
            }
        }
        if set.contains(b',') {
            return Err(err(
                "must not allow ',' (it separates the values of a repeated header)".into(),
            ));
        }
        Ok(set)
    }

    /// Whether byte `b` is allowed.
    #[inline]
    pub const fn contains(&self, b: u8) -> bool {
        self.allowed[b as usize]
    }

    /// Whether every byte of `bytes` is allowed. Branch-free over the bytes (callers bound the
    /// length first).
    #[inline]
    pub fn allows_all(&self, bytes: &[u8]) -> bool {
        bytes
            .iter()
            .fold(true, |ok, &b| ok & self.allowed[usize::from(b)])
    }
}

impl Default for Charset {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Charset({self})")
    }
}

/// Writes the set as a class body that [`Charset::parse`] reads back: `-` first when allowed,
/// then runs of three or more characters as ranges, such as `-.0-9:A-Z_a-z`.
impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.contains(b'-') {
            f.write_str("-")?;
        }
        let allowed = |b: u8| b != b'-' && self.contains(b);
        let mut b: u8 = 0x21;
        while b <= 0x7e {
            if allowed(b) {
                let start = b;
                while b < 0x7e && allowed(b + 1) {
                    b += 1;
                }
                match b - start {
                    0 => write!(f, "{}", char::from(start))?,
                    1 => write!(f, "{}{}", char::from(start), char::from(b))?,
                    _ => write!(f, "{}-{}", char::from(start), char::from(b))?,
                }
            }
            b += 1;
        }
        Ok(())
    }
}

/// Decides whether an incoming id is acceptable: non-empty, at most `max_length` bytes, every
/// byte in the [`Charset`]. Anything else (including non-UTF-8 bytes) is invalid, never an error
/// or a panic.
///
/// ```
/// use palisade_request_id::Validator;
///
/// let v = Validator::default();
/// assert!(v.is_valid(b"0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"));
/// assert!(v.is_valid(b"req:42.retry_1"));
/// assert!(!v.is_valid(b""));
/// assert!(!v.is_valid(b"hello world"));
/// assert!(!v.is_valid("caf\u{e9}".as_bytes()));
/// assert!(!v.is_valid(&[b'a'; 129]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Validator {
    charset: Charset,
    max_length: usize,
}

impl Default for Validator {
    /// [`Charset::DEFAULT`] and [`DEFAULT_MAX_LENGTH`].
    fn default() -> Self {
        Self {
            charset: Charset::DEFAULT,
            max_length: DEFAULT_MAX_LENGTH,
        }
    }
}

impl Validator {
    /// A validator for ids of at most `max_length` bytes from `charset`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (key `max_length`) when `max_length` is 0 or above [`MAX_MAX_LENGTH`].
    pub fn new(charset: Charset, max_length: usize) -> Result<Self, ConfigError> {
        if max_length == 0 {
            return Err(ConfigError::new("max_length", "must be at least 1"));
        }
        if max_length > MAX_MAX_LENGTH {
            return Err(ConfigError::new(
                "max_length",
                format!("must be at most {MAX_MAX_LENGTH} (got {max_length})"),
            ));
        }
        Ok(Self {
            charset,
            max_length,
        })
    }

    /// The allowed characters.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// The maximum length in bytes.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether `id` is acceptable.
    #[inline]
    pub fn is_valid(&self, id: &[u8]) -> bool {
        !id.is_empty() && id.len() <= self.max_length && self.charset.allows_all(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_charset_is_the_documented_class() {
        assert_eq!(Charset::parse(DEFAULT_CHARSET).unwrap(), Charset::DEFAULT);
        for b in 0u8..=255 {
            let expected = b.is_ascii_alphanumeric() || b"._:-".contains(&b);
            assert_eq!(Charset::DEFAULT.contains(b), expected, "byte {b}");
        }
    }

    #[test]
    fn dashes_at_the_edges_are_literal() {
        let leading = Charset::parse("-a").unwrap();
        assert!(leading.contains(b'-') && leading.contains(b'a') && !leading.contains(b'b'));
        let trailing = Charset::parse("a-").unwrap();
        assert!(trailing.contains(b'-') && trailing.contains(b'a'));
        let only = Charset::parse("-").unwrap();
        assert!(only.contains(b'-'));
        // `+--` is the range from '+' to '-': '+', ',' would be in it, so it is refused.
        assert!(Charset::parse("+--").is_err());
        let range = Charset::parse("a-c-").unwrap();
        assert!(range.contains(b'b') && range.contains(b'-') && !range.contains(b'd'));
    }

    #[test]
    fn bad_specs_are_config_errors() {
        for spec in ["", "a b", "a\tb", "a,b", "é", "z-a", "9-0", "\u{7f}", " "] {
            let err = Charset::parse(spec).unwrap_err();
            assert_eq!(err.key(), "charset", "{spec:?}");
        }
        // A range through ',' is refused too.
        assert!(Charset::parse("!-~").is_err());
    }

    #[test]
    fn display_round_trips() {
        for spec in [
            DEFAULT_CHARSET,
            "0-9a-f",
            "-",
            "!",
            "~",
            "a-",
            "!#-+",
            "A-Z_",
        ] {
            let set = Charset::parse(spec).unwrap();
            assert_eq!(
                Charset::parse(&set.to_string()).unwrap(),
                set,
                "{spec} -> {set}"
            );
        }
    }

    #[test]
    fn validator_limits() {
        assert!(Validator::new(Charset::DEFAULT, 0).is_err());
        assert!(Validator::new(Charset::DEFAULT, MAX_MAX_LENGTH + 1).is_err());
        let v = Validator::new(Charset::DEFAULT, 4).unwrap();
        assert!(v.is_valid(b"abcd"));
        assert!(!v.is_valid(b"abcde"));
        assert!(!v.is_valid(b"ab,c"));
        assert!(!v.is_valid(&[0xff]));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(spec in any::<String>()) {
            if let Ok(set) = Charset::parse(&spec) {
                prop_assert!(!set.contains(b','));
                prop_assert!(!set.contains(b' '));
                prop_assert_eq!(Charset::parse(&set.to_string()).unwrap(), set);
                for b in spec.bytes().filter(|&b| b != b'-') {
                    prop_assert!(set.contains(b));
                }
            }
        }

        #[test]
        fn ascii_specs_never_panic(spec in "[ -~]{0,12}") {
            let _ = Charset::parse(&spec);
        }

        #[test]
        fn validity_matches_a_reference(id in proptest::collection::vec(any::<u8>(), 0..200)) {
            let reference = !id.is_empty()
                && id.len() <= DEFAULT_MAX_LENGTH
                && id.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
            prop_assert_eq!(Validator::default().is_valid(&id), reference);
        }
    }
}
