//! Configuration: plain data with documented defaults, validation, and the resolved settings.

use std::{borrow::Cow, time::Duration};

use palisade_core::{ConfigError, EnforcementMode, RetryAfter};

use crate::machine::{MAX_PROBES, State};

/// The largest count-based window accepted by validation.
pub const MAX_WINDOW_CALLS: u32 = 100_000;
/// The most buckets of a time-based window.
pub const MAX_WINDOW_BUCKETS: u32 = crate::window::MAX_BUCKETS;
/// The longest open wait (and cap of the backoff).
pub const MAX_OPEN_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Which calls the failure and slow-call rates are computed over.
///
/// In a configuration file: `window = { type = "time", duration = 10, buckets = 10 }` or
/// `window = { type = "count", size = 100 }` (durations in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)
)]
pub enum SlidingWindow {
    /// The last `size` calls.
    Count {
        /// How many calls.
        size: u32,
    },
    /// The calls of the last `duration`, kept in `buckets` buckets of `duration / buckets` each
    /// (a bucket leaves the window as a whole).
    Time {
        /// How far back.
        #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
        duration: Duration,
        /// Into how many buckets the duration is split.
        buckets: u32,
    },
}

impl SlidingWindow {
    fn spec(self) -> Result<WindowSpec, ConfigError> {
        Ok(match self {
            SlidingWindow::Count { size } => WindowSpec::Count {
                size: count(size, MAX_WINDOW_CALLS, "window.size")?,
            },
            SlidingWindow::Time { duration, buckets } => {
                let buckets = count(buckets, MAX_WINDOW_BUCKETS, "window.buckets")?;
                let bucket_ms = millis(duration) / u64::from(buckets);
                if bucket_ms == 0 {
                    return Err(ConfigError::new(
                        "window.duration",
                        "must give buckets of at least 1 ms",
                    ));
                }
                if duration > MAX_OPEN_WAIT * 30 {
                    return Err(ConfigError::new(
                        "window.duration",
                        "must be at most 30 days",
                    ));
                }
                WindowSpec::Time { bucket_ms, buckets }
            }
        })
    }

    /// The last `size` calls.
    pub const fn count(size: u32) -> Self {
        Self::Count { size }
    }

    /// The last `duration`, in `buckets` buckets.
    pub const fn time(duration: Duration, buckets: u32) -> Self {
        Self::Time { duration, buckets }
    }
}

impl Default for SlidingWindow {
    /// The last 100 calls (resilience4j's default).
    fn default() -> Self {
        Self::Count { size: 100 }
    }
}

/// Configuration of a circuit breaker (and of every breaker of a per-route or per-key registry).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | `default` | the `breaker` label of metrics and logs; scoped breakers are `name:key` |
/// | `window` | count, the last 100 calls | the calls the rates are computed over |
/// | `minimum_calls` | 5 | calls the window must hold before its rates count |
/// | `failure_rate_threshold` | 0.5 | open when at least this share of the window's calls failed |
/// | `consecutive_failures` | 5 | also open after this many failures in a row, windows aside (0: off) |
/// | `slow_call_duration` | 0 (off) | a call lasting at least this long (until its body ends) is slow |
/// | `slow_call_rate_threshold` | 0.5 | open when at least this share of the window's calls were slow |
/// | `wait_in_open` | 30 s | how long an open breaker rejects before probing |
/// | `open_backoff_multiplier` | 1.0 (fixed wait) | each failed recovery multiplies the wait by this |
/// | `max_wait_in_open` | 5 min | cap of the growing wait |
/// | `open_wait_jitter` | 0.0 | random spread of each wait, ± this fraction |
/// | `permitted_calls_in_half_open` | 3 | concurrent probes admitted when half-open |
/// | `success_threshold` | 3 | probe successes that close the breaker |
/// | `max_wait_in_half_open` | 30 s | reopen if not closed within this (0: no limit) |
/// | `automatic_transition` | false | leave the open state by timer, not only on the next call |
/// | `log_state_changes` | true | log each state change (off for an owner that logs its own, more specific line) |
/// | `mode` | enforce | `ObserveOnly` starts the breaker in `METRICS_ONLY` |
/// | `retry_after_jitter` | 0 s | random extra `Retry-After` on server rejections |
/// | `max_breakers` | 1024 | per-route / per-key scopes: breakers kept at once |
/// | `idle_timeout` | 10 min | per-route / per-key scopes: a breaker unused this long may be evicted |
///
/// **Mapping from the original plan** (failure threshold 5, success threshold 3, reset timeout
/// 30 s): `consecutive_failures = 5` opens after 5 failures in a row exactly as before, and
/// `minimum_calls = 5` with `failure_rate_threshold = 0.5` means a fresh breaker whose first 5
/// calls fail opens at the same moment; on top, the rate catches intermittent failures (say 60%
/// of calls) that never string 5 together. `success_threshold = 3` closes after 3 successful
/// probes, and `wait_in_open = 30 s` is the reset timeout.
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// The name in metric labels and logs.
    pub name: Cow<'static, str>,
    /// The sliding window of the rates.
    pub window: SlidingWindow,
    /// Calls the window must hold before its rates are evaluated.
    pub minimum_calls: u32,
    /// Failure share of the window that opens the breaker, in `(0, 1]`.
    pub failure_rate_threshold: f64,
    /// Failures in a row that open the breaker whatever the window holds; 0 turns it off.
    pub consecutive_failures: u32,
    /// Calls at least this long are slow; zero turns slow-call detection off.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub slow_call_duration: Duration,
    /// Slow share of the window that opens the breaker, in `(0, 1]`.
    pub slow_call_rate_threshold: f64,
    /// How long an open breaker rejects calls before it lets probes through.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub wait_in_open: Duration,
    /// Factor applied to the open wait after each failed recovery (1.0: fixed wait).
    pub open_backoff_multiplier: f64,
    /// The longest open wait the backoff grows to.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub max_wait_in_open: Duration,
    /// Random spread of each open wait: ± this fraction, in `[0, 1)`.
    pub open_wait_jitter: f64,
    /// Probes admitted at once when half-open.
    pub permitted_calls_in_half_open: u32,
    /// Successful probes that close the breaker.
    pub success_threshold: u32,
    /// The longest half-open period before the breaker reopens; zero for no limit.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub max_wait_in_half_open: Duration,
    /// Move from open to half-open (and out of a timed-out half-open) by timer, so that the state
    /// is current even without calls. Needs a tokio runtime when the breaker opens; without one
    /// the next call makes the move.
    pub automatic_transition: bool,
    /// Log each state change at `warn` (opened) or `info`. Metrics and
    /// [`on_state_change`](crate::CircuitBreakerBuilder::on_state_change) callbacks see every
    /// change either way.
    pub log_state_changes: bool,
    /// `ObserveOnly` starts the breaker in the metrics-only state.
    pub mode: EnforcementMode,
    /// Random extra `Retry-After` added to server rejections.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after_jitter: Duration,
    /// Per-route and per-key scopes: the most breakers kept; calls for further keys share one
    /// overflow breaker (`name:_overflow`) until idle ones are evicted.
    pub max_breakers: u32,
    /// Per-route and per-key scopes: a breaker unused this long may be evicted to make room.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub idle_timeout: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            window: SlidingWindow::default(),
            minimum_calls: 5,
            failure_rate_threshold: 0.5,
            consecutive_failures: 5,
            slow_call_duration: Duration::ZERO,
            slow_call_rate_threshold: 0.5,
            wait_in_open: Duration::from_secs(30),
            open_backoff_multiplier: 1.0,
            max_wait_in_open: Duration::from_secs(300),
            open_wait_jitter: 0.0,
            permitted_calls_in_half_open: 3,
            success_threshold: 3,
            max_wait_in_half_open: Duration::from_secs(30),
            automatic_transition: false,
            log_state_changes: true,
            mode: EnforcementMode::Enforce,
            retry_after_jitter: Duration::ZERO,
            max_breakers: 1024,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// The validated settings a breaker runs with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) window: WindowSpec,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) consecutive_failures: u32,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) wait_in_open: Duration,
    pub(crate) open_backoff_multiplier: f64,
    pub(crate) max_wait_in_open: Duration,
    pub(crate) open_wait_jitter: f64,
    pub(crate) permitted_calls_in_half_open: u32,
    pub(crate) success_threshold: u32,
    pub(crate) max_wait_in_half_open: Option<Duration>,
    pub(crate) automatic_transition: bool,
    pub(crate) log_state_changes: bool,
    pub(crate) initial: State,
    pub(crate) retry_after_jitter: Duration,
    pub(crate) max_breakers: usize,
    pub(crate) idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowSpec {
    Count { size: u32 },
    Time { bucket_ms: u64, buckets: u32 },
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn fraction(value: f64, key: &'static str, upper_inclusive: bool) -> Result<f64, ConfigError> {
    let ok = value.is_finite()
        && if upper_inclusive {
            value > 0.0 && value <= 1.0
        } else {
            (0.0..1.0).contains(&value)
        };
    if ok {
        Ok(value)
    } else {
        let range = if upper_inclusive { "(0, 1]" } else { "[0, 1)" };
        Err(ConfigError::new(key, format!("{value} must be in {range}")))
    }
}

fn count(value: u32, max: u32, key: &'static str) -> Result<u32, ConfigError> {
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            key,
            format!("{value} must be between 1 and {max}"),
        ))
    }
}

impl CircuitBreakerConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: an empty or long name, an empty or oversized window,
    /// buckets shorter than a millisecond, `minimum_calls` of 0 or larger than a count window, a
    /// rate outside `(0, 1]`, a zero or over-long open wait, a backoff multiplier below 1, a cap
    /// below the open wait, a jitter outside `[0, 1)`, zero probes or successes, or zero
    /// `max_breakers` / `idle_timeout`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.settings().map(|_| ())
    }

    pub(crate) fn settings(&self) -> Result<Settings, ConfigError> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(ConfigError::new("name", "must be 1 to 64 characters"));
        }
        let window = self.window.spec()?;
        let minimum_calls = count(self.minimum_calls, u32::MAX, "minimum_calls")?;
        if let WindowSpec::Count { size } = window
            && minimum_calls > size
        {
            return Err(ConfigError::new(
                "minimum_calls",
                format!("{minimum_calls} exceeds the window of {size} calls: it would never open"),
            ));
        }
        let failure_rate_threshold =
            fraction(self.failure_rate_threshold, "failure_rate_threshold", true)?;
        let slow_call_rate_threshold = fraction(
            self.slow_call_rate_threshold,
            "slow_call_rate_threshold",
            true,
        )?;
        if self.wait_in_open < Duration::from_millis(1) || self.wait_in_open > MAX_OPEN_WAIT {
            return Err(ConfigError::new(
                "wait_in_open",
                "must be between 1 ms and 24 hours",
            ));
        }
        let multiplier = self.open_backoff_multiplier;
        if !(multiplier.is_finite() && (1.0..=100.0).contains(&multiplier)) {
            return Err(ConfigError::new(
                "open_backoff_multiplier",
                format!("{multiplier} must be between 1 and 100"),
            ));
        }
        if self.max_wait_in_open < self.wait_in_open || self.max_wait_in_open > MAX_OPEN_WAIT {
            return Err(ConfigError::new(
                "max_wait_in_open",
                "must be at least wait_in_open and at most 24 hours",
            ));
        }
        let open_wait_jitter = fraction(self.open_wait_jitter, "open_wait_jitter", false)?;
        let permitted_calls_in_half_open = count(
            self.permitted_calls_in_half_open,
            MAX_PROBES.min(1000),
            "permitted_calls_in_half_open",
        )?;
        let success_threshold = count(
            self.success_threshold,
            MAX_PROBES.min(1000),
            "success_threshold",
        )?;
        let max_breakers = count(self.max_breakers, 1 << 20, "max_breakers")?;
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new("idle_timeout", "must be positive"));
        }
        // The base is the remaining open time; only the jitter is configured.
        RetryAfter::checked(Duration::ZERO, self.retry_after_jitter)?;
        Ok(Settings {
            window,
            minimum_calls,
            failure_rate_threshold,
            consecutive_failures: self.consecutive_failures,
            slow_call_duration: (!self.slow_call_duration.is_zero())
                .then_some(self.slow_call_duration),
            slow_call_rate_threshold,
            wait_in_open: self.wait_in_open,
            open_backoff_multiplier: multiplier,
            max_wait_in_open: self.max_wait_in_open,
            open_wait_jitter,
            permitted_calls_in_half_open,
            success_threshold,
            max_wait_in_half_open: (!self.max_wait_in_half_open.is_zero())
                .then_some(self.max_wait_in_half_open),
            automatic_transition: self.automatic_transition,
            log_state_changes: self.log_state_changes,
            initial: if self.mode.enforces() {
                State::Closed
            } else {
                State::MetricsOnly
            },
            retry_after_jitter: self.retry_after_jitter,
            max_breakers: max_breakers as usize,
            idle_timeout: self.idle_timeout,
        })
    }
}

impl Settings {
    /// The open wait after `failed_recoveries` failed recoveries, with `unit` in `[0, 1]` choosing
    /// the jitter (0.5 = none), in milliseconds: `wait_in_open × multiplier^n`, spread by ± the
    /// jitter, capped at `max_wait_in_open`, and at least 1 ms.
    pub(crate) fn open_wait_ms(&self, failed_recoveries: u32, unit: f64) -> u64 {
        let exponent = i32::try_from(failed_recoveries).unwrap_or(i32::MAX);
        let grown = self.wait_in_open.as_secs_f64() * self.open_backoff_multiplier.powi(exponent);
        let spread = 1.0 + self.open_wait_jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let secs = (grown * spread).min(self.max_wait_in_open.as_secs_f64());
        // Bounded by max_wait_in_open (24 h) above and clamped to 1 ms below.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = (secs * 1000.0).round() as u64;
        ms.max(1)
    }

    pub(crate) fn half_open_max_ms(&self) -> Option<u64> {
        self.max_wait_in_half_open.map(millis)
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[allow(clippy::needless_pass_by_value)]
    fn key(config: CircuitBreakerConfig) -> String {
        config.validate().unwrap_err().key().to_owned()
    }

    #[test]
    fn defaults_are_valid() {
        let s = CircuitBreakerConfig::default().settings().unwrap();
        assert_eq!(s.window, WindowSpec::Count { size: 100 });
        let time = CircuitBreakerConfig {
            window: SlidingWindow::time(Duration::from_secs(10), 10),
            ..Default::default()
        };
        assert_eq!(
            time.settings().unwrap().window,
            WindowSpec::Time {
                bucket_ms: 1_000,
                buckets: 10
            }
        );
        assert_eq!(s.initial, State::Closed);
        assert_eq!(s.slow_call_duration, None);
        assert_eq!(s.max_wait_in_half_open, Some(Duration::from_secs(30)));
        assert_eq!(s.open_wait_ms(0, 0.5), 30_000);
        assert_eq!(s.open_wait_ms(7, 0.5), 30_000, "no backoff by default");
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let s = CircuitBreakerConfig {
            wait_in_open: Duration::from_secs(10),
            open_backoff_multiplier: 2.0,
            max_wait_in_open: Duration::from_secs(60),
            open_wait_jitter: 0.2,
            ..Default::default()
        }
        .settings()
        .unwrap();
        assert_eq!(s.open_wait_ms(0, 0.5), 10_000);
        assert_eq!(s.open_wait_ms(1, 0.5), 20_000);
        assert_eq!(s.open_wait_ms(2, 0.5), 40_000);
        assert_eq!(s.open_wait_ms(2, 0.0), 32_000);
        assert_eq!(s.open_wait_ms(2, 1.0), 48_000);
        assert_eq!(s.open_wait_ms(3, 0.5), 60_000, "capped");
        assert_eq!(s.open_wait_ms(u32::MAX, 0.0), 60_000, "no overflow");
    }

    #[test]
    fn observe_only_starts_in_metrics_only() {
        let s = CircuitBreakerConfig {
            mode: EnforcementMode::ObserveOnly,
            ..Default::default()
        }
        .settings()
        .unwrap();
        assert_eq!(s.initial, State::MetricsOnly);
    }

    #[test]
    fn nonsense_is_an_error_naming_the_field() {
        let d = CircuitBreakerConfig::default;
        assert_eq!(
            key(CircuitBreakerConfig {
                name: "".into(),
                ..d()
            }),
            "name"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                window: SlidingWindow::count(0),
                ..d()
            }),
            "window.size"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                window: SlidingWindow::count(4),
                ..d()
            }),
            "minimum_calls"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                window: SlidingWindow::count(MAX_WINDOW_CALLS + 1),
                ..d()
            }),
            "window.size"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                window: SlidingWindow::time(Duration::from_millis(5), 10),
                ..d()
            }),
            "window.duration"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                window: SlidingWindow::time(Duration::from_secs(5), 0),
                ..d()
            }),
            "window.buckets"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                minimum_calls: 0,
                ..d()
            }),
            "minimum_calls"
        );
    }

    #[test]
    fn nonsense_rates_waits_and_counts_are_errors() {
        let d = CircuitBreakerConfig::default;
        for bad in [0.0, 1.5, f64::NAN, -0.1] {
            assert_eq!(
                key(CircuitBreakerConfig {
                    failure_rate_threshold: bad,
                    ..d()
                }),
                "failure_rate_threshold"
            );
        }
        assert_eq!(
            key(CircuitBreakerConfig {
                slow_call_rate_threshold: 0.0,
                ..d()
            }),
            "slow_call_rate_threshold"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                wait_in_open: Duration::ZERO,
                ..d()
            }),
            "wait_in_open"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                open_backoff_multiplier: 0.5,
                ..d()
            }),
            "open_backoff_multiplier"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                max_wait_in_open: Duration::from_secs(1),
                ..d()
            }),
            "max_wait_in_open"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                open_wait_jitter: 1.0,
                ..d()
            }),
            "open_wait_jitter"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                permitted_calls_in_half_open: 0,
                ..d()
            }),
            "permitted_calls_in_half_open"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                success_threshold: 5000,
                ..d()
            }),
            "success_threshold"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                max_breakers: 0,
                ..d()
            }),
            "max_breakers"
        );
        assert_eq!(
            key(CircuitBreakerConfig {
                idle_timeout: Duration::ZERO,
                ..d()
            }),
            "idle_timeout"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_from_json_with_defaults() {
        let config: CircuitBreakerConfig = serde_json::from_str(
            r#"{"name": "db", "window": {"type": "count", "size": 50}, "wait_in_open": 2.5,
                "consecutive_failures": 0, "mode": "observe_only"}"#,
        )
        .unwrap();
        assert_eq!(config.name, "db");
        assert_eq!(config.window, SlidingWindow::count(50));
        assert_eq!(config.wait_in_open, Duration::from_millis(2500));
        assert_eq!(config.consecutive_failures, 0);
        assert_eq!(config.mode, EnforcementMode::ObserveOnly);
        assert_eq!(config.success_threshold, 3);
        let time: CircuitBreakerConfig =
            serde_json::from_str(r#"{"window": {"type": "time", "duration": 60, "buckets": 12}}"#)
                .unwrap();
        assert_eq!(
            time.window,
            SlidingWindow::time(Duration::from_secs(60), 12)
        );
        assert!(
            serde_json::from_str::<CircuitBreakerConfig>(r#"{"unknown": 1}"#).is_err(),
            "unknown fields are errors"
        );
    }
}
