//! Bytes eight at a time (SWAR: SIMD within a register), without `unsafe` or a dependency: the
//! scans of a clean request target are mostly "is any of these eight bytes special?", and a
//! table lookup and branch per byte was the largest cost of a clean request.

/// `0x01` in every byte.
pub(crate) const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// `0x80` in every byte: the flag bit of the masks below.
pub(crate) const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// A mask with the high bit set in (at least) the lowest byte of `word` equal to `byte`; bits
/// above the lowest match may be false positives, so only the lowest set bit is meaningful.
#[inline]
pub(crate) const fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * byte as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index of the first `byte` in `bytes`, eight bytes per step.
#[inline]
pub(crate) fn find(bytes: &[u8], byte: u8) -> Option<usize> {
    let mut from = 0;
    while from + 8 <= bytes.len() {
        let mut chunk = [0; 8];
        chunk.copy_from_slice(&bytes[from..from + 8]);
        let found = bytes_equal(u64::from_le_bytes(chunk), byte);
        if found != 0 {
            return Some(from + (found.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    bytes[from..]
        .iter()
        .position(|&b| b == byte)
        .map(|at| from + at)
}

/// The eight bytes of `bytes` from `at`, little-endian, padded with zeros past the end. The tail
/// is assembled byte by byte: a variable-length copy would call `memcpy`.
#[inline]
pub(crate) fn word_at(bytes: &[u8], at: usize) -> u64 {
    if let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        return u64::from_le_bytes(word);
    }
    bytes[at..]
        .iter()
        .rev()
        .fold(0, |word, &b| word << 8 | u64::from(b))
}

/// Bit 7 of each byte of `word` that equals `byte`, exactly (no false positives, unlike
/// [`bytes_equal`]).
#[inline]
pub(crate) const fn exactly_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    let x = word ^ (ONES * byte as u64);
    // Bit 7 of a byte of `t` is set when the byte's low seven bits are not all zero; no carry
    // crosses bytes (0x7f + 0x7f < 0x100).
    let t = (x & LOW7) + LOW7;
    !(t | x) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_finds_the_first_match() {
        for len in 0..24 {
            for at in 0..=len {
                let mut bytes = vec![b'a'; len];
                if at < len {
                    bytes[at] = b'?';
                }
                bytes.extend_from_slice(b"b?");
                let expected = if at < len { at } else { len + 1 };
                assert_eq!(find(&bytes, b'?'), Some(expected));
            }
        }
        assert_eq!(find(b"abcdefghijk", b'?'), None);
        assert_eq!(find(&[0xff, 0x3f], b'?'), Some(1));
    }

    #[test]
    fn words_and_exact_matches() {
        assert_eq!(word_at(b"abc", 0), u64::from_le_bytes(*b"abc\0\0\0\0\0"));
        assert_eq!(word_at(b"0123456789", 1), u64::from_le_bytes(*b"12345678"));
        assert_eq!(
            word_at(b"0123456789", 8),
            u64::from_le_bytes(*b"89\0\0\0\0\0\0")
        );
        for byte in 0..=255u8 {
            let mut word = [b'a'; 8];
            word[3] = byte;
            let expected = if byte == b'/' { 0x80 << 24 } else { 0 };
            assert_eq!(
                exactly_equal(u64::from_le_bytes(word), b'/'),
                expected,
                "{byte:#x}"
            );
        }
    }
}
