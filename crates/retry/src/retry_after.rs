//! Reading an upstream's `Retry-After` (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};

/// The wait a `Retry-After` value asks for, measured from `now`.
///
/// Both forms are read: delta-seconds (`120`) and an HTTP-date (`Wed, 21 Oct 2015 07:28:00
/// GMT`, and the two obsolete date formats). A date in the past means "now" (zero). A value
/// that is neither form is ignored (`None`): the backoff applies as if there were no header.
/// Absurdly large delta-seconds saturate instead of failing, so they end the retries rather
/// than being ignored.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderValue;
/// use palisade_retry::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("3"), now), Some(Duration::from_secs(3)));
/// let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
/// assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only, so the only failure is overflow.
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response, read against the system clock.
pub(crate) fn of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_str(value).unwrap(), now)
    }

    #[test]
    fn delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse("0", now), Some(Duration::ZERO));
        assert_eq!(parse(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX)),
            "absurd values saturate"
        );
        for bad in ["-1", "1.5", "1e3", "", "  ", "tomorrow"] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 - 30);
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse(text, now), Some(Duration::from_secs(30)), "{text}");
        }
    }

    #[test]
    fn a_date_in_the_past_is_now() {
        let now = SystemTime::now();
        let past = httpdate::fmt_http_date(now - Duration::from_secs(3600));
        assert_eq!(parse(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn far_dates_are_far() {
        let now = SystemTime::UNIX_EPOCH;
        let wait = parse("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(wait > Duration::from_secs(250_000_000_000));
    }

    proptest::proptest! {
        #[test]
        fn any_header_value_parses_or_is_ignored(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let _ = parse_retry_after(&value, SystemTime::now());
            }
        }

        #[test]
        fn delta_seconds_round_trip(secs in 0u64..=u64::MAX) {
            let value = HeaderValue::from_str(&secs.to_string()).unwrap();
            proptest::prop_assert_eq!(parse_retry_after(&value, SystemTime::UNIX_EPOCH), Some(Duration::from_secs(secs)));
        }

        #[test]
        fn dates_round_trip(base in 0u64..4_000_000_000, ahead in 0u64..1_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(base);
            let value = HeaderValue::from_str(&httpdate::fmt_http_date(now + Duration::from_secs(ahead))).unwrap();
            proptest::prop_assert_eq!(parse_retry_after(&value, now), Some(Duration::from_secs(ahead)));
        }
    }
}
