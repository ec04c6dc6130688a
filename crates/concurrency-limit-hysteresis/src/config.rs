//! Configuration: plain data with documented defaults, a builder, and validation.

use std::{borrow::Cow, time::Duration};

use palisade_core::{ConfigError, EnforcementMode};

/// A high- or low-water mark: a fraction of the maximum, or an absolute count.
///
/// In a configuration file a float is a fraction (`high_water = 0.8`) and an integer is a count
/// (`high_water = 800`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(untagged))]
pub enum Watermark {
    /// An absolute number of requests or connections.
    Count(u32),
    /// A fraction of the maximum, in `(0, 1]`.
    Fraction(f64),
}

impl Watermark {
    /// A fraction of the maximum.
    pub const fn fraction(value: f64) -> Self {
        Self::Fraction(value)
    }

    /// An absolute count.
    pub const fn count(value: u32) -> Self {
        Self::Count(value)
    }

    /// The mark as a count of `max`: fractions of the high mark round up, of the low mark down,
    /// so that rounding never narrows the hysteresis band.
    fn resolve(self, max: u32, round_up: bool, key: &'static str) -> Result<u32, ConfigError> {
        match self {
            Self::Count(count) if count <= max => Ok(count),
            Self::Count(count) => Err(ConfigError::new(
                key,
                format!("{count} exceeds the maximum of {max}"),
            )),
            Self::Fraction(f) if f.is_finite() && f > 0.0 && f <= 1.0 => {
                let exact = f * f64::from(max);
                let rounded = if round_up {
                    exact.ceil()
                } else {
                    exact.floor()
                };
                // 0 < rounded <= max <= u32::MAX, so the cast is exact.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(rounded as u32)
            }
            Self::Fraction(f) => Err(ConfigError::new(
                key,
                format!("fraction {f} must be in (0, 1]"),
            )),
        }
    }
}

/// The resolved, validated thresholds of one limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// The hard maximum: never exceeded while enforcing.
    pub max: u32,
    /// Shedding starts when the count reaches this mark.
    pub high: u32,
    /// Shedding stops when the count falls to this mark (and the dwell time has passed).
    pub low: u32,
}

impl Thresholds {
    pub(crate) fn resolve(max: u32, high: Watermark, low: Watermark) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new("max", "must be at least 1"));
        }
        if max > MAX_LIMIT {
            return Err(ConfigError::new(
                "max",
                format!("must be at most {MAX_LIMIT}"),
            ));
        }
        let high_count = high.resolve(max, true, "high_water")?;
        let low_count = low.resolve(max, false, "low_water")?;
        if high_count == 0 {
            return Err(ConfigError::new("high_water", "must resolve to at least 1"));
        }
        if low_count >= high_count {
            return Err(ConfigError::new(
                "low_water",
                format!("must be below high_water ({low_count} >= {high_count})"),
            ));
        }
        Ok(Self {
            max,
            high: high_count,
            low: low_count,
        })
    }
}

/// The largest limit a limiter accepts (the count lives in 31 bits of an atomic word).
pub const MAX_LIMIT: u32 = 1 << 30;

/// Configuration of the in-flight request limiter ([`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer)).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_in_flight` | 1000 | hard cap on requests in flight; never exceeded |
/// | `high_water` | 0.8 (of max) | start shedding when in-flight reaches this |
/// | `low_water` | 0.6 (of max) | stop shedding when in-flight falls to this |
/// | `min_shedding_dwell` | 0 s | shed at least this long once started, against flapping |
/// | `critical_reserve` | true | `CriticalPlus` requests may use the headroom above high water while shedding |
/// | `retry_after` | 5 s | `Retry-After` on rejections (rounded up, at least 1 s) |
/// | `retry_after_jitter` | 0 s | random extra delay added to `Retry-After` |
/// | `mode` | enforce | `ObserveOnly` counts and logs rejections but serves every request |
/// | `name` | `global` | the `limiter` label of its metrics and the overload source name |
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ConcurrencyLimitConfig {
    /// Hard cap on requests in flight.
    pub max_in_flight: u32,
    /// Where shedding starts.
    pub high_water: Watermark,
    /// Where shedding stops.
    pub low_water: Watermark,
    /// The least time spent shedding once it starts.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub min_shedding_dwell: Duration,
    /// Whether `CriticalPlus` requests may use the headroom between high water and the maximum.
    pub critical_reserve: bool,
    /// `Retry-After` on rejections.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after: Duration,
    /// Random extra `Retry-After`, so rejected clients do not return in lockstep.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after_jitter: Duration,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
    /// The name in metric labels, logs and the overload state.
    pub name: Cow<'static, str>,
}

impl Default for ConcurrencyLimitConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1000,
            high_water: Watermark::Fraction(0.8),
            low_water: Watermark::Fraction(0.6),
            min_shedding_dwell: Duration::ZERO,
            critical_reserve: true,
            retry_after: Duration::from_secs(5),
            retry_after_jitter: Duration::ZERO,
            mode: EnforcementMode::Enforce,
            name: Cow::Borrowed("global"),
        }
    }
}

impl ConcurrencyLimitConfig {
    /// Checks the configuration and resolves its thresholds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a zero or too large maximum, a mark outside `(0, 1]` or
    /// above the maximum, a low-water mark not below the high-water mark, or an empty name.
    pub fn validate(&self) -> Result<Thresholds, ConfigError> {
        validate_name(&self.name)?;
        Thresholds::resolve(self.max_in_flight, self.high_water, self.low_water).map_err(|e| {
            if e.key() == "max" {
                ConfigError::new("max_in_flight", e.problem().to_owned())
            } else {
                e
            }
        })
    }
}

/// What the connection limiter does with connections that arrive above the high-water mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum OverLimitPolicy {
    /// Accept, answer `HTTP/1.1 503` with `Retry-After` and `Connection: close`, and close (the
    /// default). Clients learn at once that the server is busy and when to retry.
    #[default]
    RespondServiceUnavailable,
    /// Stop accepting until the open count falls to the low-water mark; new connections wait in
    /// the kernel's listen backlog (and fail there once it is full).
    PauseAccepting,
}

/// Configuration of the connection limiter ([`ConnectionLimitListener`](crate::ConnectionLimitListener)).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_connections` | 10 000 | hard cap on open connections |
/// | `high_water` | 0.8 (of max) | start refusing at this many open connections |
/// | `low_water` | 0.6 (of max) | accept again once open connections fall to this |
/// | `policy` | respond 503 | what to do with a connection above the mark |
/// | `retry_after` | 5 s | `Retry-After` of the canned 503 |
/// | `max_rejecting` | 256 | connections being answered 503 at once; beyond, they are closed at once |
/// | `mode` | enforce | `ObserveOnly` counts and logs refusals but accepts every connection |
/// | `name` | `listener` | the `listener` label of its metrics and the overload source name |
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ConnectionLimitConfig {
    /// Hard cap on open connections.
    pub max_connections: u32,
    /// Where refusing starts.
    pub high_water: Watermark,
    /// Where refusing stops.
    pub low_water: Watermark,
    /// What to do above the mark.
    pub policy: OverLimitPolicy,
    /// `Retry-After` of the canned 503.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after: Duration,
    /// How many refused connections may be answered at once.
    pub max_rejecting: u32,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
    /// The name in metric labels, logs and the overload state.
    pub name: Cow<'static, str>,
}

impl Default for ConnectionLimitConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            high_water: Watermark::Fraction(0.8),
            low_water: Watermark::Fraction(0.6),
            policy: OverLimitPolicy::RespondServiceUnavailable,
            retry_after: Duration::from_secs(5),
            max_rejecting: 256,
            mode: EnforcementMode::Enforce,
            name: Cow::Borrowed("listener"),
        }
    }
}

impl ConnectionLimitConfig {
    /// Checks the configuration and resolves its thresholds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field, as for [`ConcurrencyLimitConfig::validate`].
    pub fn validate(&self) -> Result<Thresholds, ConfigError> {
        validate_name(&self.name)?;
        Thresholds::resolve(self.max_connections, self.high_water, self.low_water).map_err(|e| {
            if e.key() == "max" {
                ConfigError::new("max_connections", e.problem().to_owned())
            } else {
                e
            }
        })
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ConfigError::new("name", "must be 1 to 64 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(max: u32, high: Watermark, low: Watermark) -> Result<Thresholds, ConfigError> {
        Thresholds::resolve(max, high, low)
    }

    #[test]
    fn defaults_resolve_to_800_and_600() {
        let t = ConcurrencyLimitConfig::default().validate().unwrap();
        assert_eq!(
            t,
            Thresholds {
                max: 1000,
                high: 800,
                low: 600
            }
        );
        let c = ConnectionLimitConfig::default().validate().unwrap();
        assert_eq!(
            c,
            Thresholds {
                max: 10_000,
                high: 8000,
                low: 6000
            }
        );
    }

    #[test]
    fn fractions_round_outwards() {
        let t = thresholds(10, Watermark::fraction(0.75), Watermark::fraction(0.55)).unwrap();
        assert_eq!((t.high, t.low), (8, 5));
        let t = thresholds(3, Watermark::fraction(1.0), Watermark::count(0)).unwrap();
        assert_eq!((t.max, t.high, t.low), (3, 3, 0));
    }

    #[test]
    fn nonsense_is_an_error_naming_the_field() {
        let key = |r: Result<Thresholds, ConfigError>| r.unwrap_err().key().to_owned();
        let f = Watermark::fraction;
        assert_eq!(key(thresholds(0, f(0.8), f(0.6))), "max");
        assert_eq!(key(thresholds(MAX_LIMIT + 1, f(0.8), f(0.6))), "max");
        assert_eq!(key(thresholds(10, f(0.6), f(0.8))), "low_water");
        assert_eq!(key(thresholds(10, f(0.8), f(0.8))), "low_water");
        assert_eq!(key(thresholds(10, f(1.5), f(0.6))), "high_water");
        assert_eq!(key(thresholds(10, f(0.0), f(0.0))), "high_water");
        assert_eq!(key(thresholds(10, f(f64::NAN), f(0.1))), "high_water");
        assert_eq!(key(thresholds(10, f(0.8), f(-0.1))), "low_water");
        assert_eq!(
            key(thresholds(10, Watermark::count(11), f(0.1))),
            "high_water"
        );
        assert_eq!(
            key(thresholds(10, Watermark::count(0), Watermark::count(0))),
            "high_water"
        );

        let zero = ConcurrencyLimitConfig {
            max_in_flight: 0,
            ..Default::default()
        };
        assert_eq!(zero.validate().unwrap_err().key(), "max_in_flight");
        let unnamed = ConnectionLimitConfig {
            name: "".into(),
            ..Default::default()
        };
        assert_eq!(unnamed.validate().unwrap_err().key(), "name");
        let zero = ConnectionLimitConfig {
            max_connections: 0,
            ..Default::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "invalid max_connections: must be at least 1"
        );
    }
}
