//! Request targets in logs: escaped and truncated, so hostile bytes (control characters, escape
//! sequences, megabytes of padding) never reach a log line as they came.

use std::fmt;

/// Bytes logged before truncating.
const MAX_LOGGED: usize = 128;

/// Displays bytes as printable ASCII, everything else (and `\` and `"`) as `\xNN`, cut after
/// [`MAX_LOGGED`] bytes with the number of bytes left out.
pub(crate) struct Escaped<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for &b in self.0.iter().take(MAX_LOGGED) {
            if b.is_ascii_graphic() && b != b'\\' && b != b'"' {
                f.write_char(char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.0.len() > MAX_LOGGED {
            write!(f, "...(+{} bytes)", self.0.len() - MAX_LOGGED)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_truncates() {
        assert_eq!(
            Escaped(b"/a\r\n\x1b[31m\\\"\xff b").to_string(),
            "/a\\x0d\\x0a\\x1b[31m\\x5c\\x22\\xff\\x20b"
        );
        let long = vec![b'a'; 200];
        let shown = Escaped(&long).to_string();
        assert!(shown.starts_with(&"a".repeat(128)));
        assert!(shown.ends_with("...(+72 bytes)"), "{shown}");
    }
}
