//! `serde` support for durations written as seconds, the unit of every Palisade configuration
//! file: `retry_after = 5`, `max_wait = 0.25`.
//!
//! Use it with `#[serde(with = "palisade_core::duration_secs")]` on a `Duration` field.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Reads a non-negative number of seconds (integer or fractional) as a [`Duration`].
///
/// # Errors
///
/// The deserializer's error for a value that is not a number, or is negative, not finite or
/// too large for a `Duration`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| serde::de::Error::custom(format!("{secs} is not a duration in seconds")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        wait: Duration,
    }

    fn parse(json: &str) -> Result<Duration, String> {
        serde_json::from_str::<Holder>(json)
            .map(|h| h.wait)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_and_fractions_are_seconds() {
        assert_eq!(parse(r#"{"wait": 5}"#).unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse(r#"{"wait": 0.25}"#).unwrap(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn negative_and_non_numbers_are_errors() {
        assert!(
            parse(r#"{"wait": -1}"#)
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse(r#"{"wait": "5s"}"#).is_err());
    }
}
