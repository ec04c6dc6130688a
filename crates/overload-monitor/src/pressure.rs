//! Pressure levels with hysteresis: a resource climbs a level as soon as its ratio crosses the
//! level's threshold, and comes back down only once the ratio has stayed below `resume` for
//! `dwell`, so a server at the edge neither flaps between shedding and serving nor recovers on
//! one good sample.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use palisade_core::ConfigError;
use tokio::time::Instant;

/// How hard a resource is pressed, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pressure {
    /// Below `warn`.
    Normal,
    /// From `warn`: shed `Sheddable` traffic.
    Warn,
    /// From `degrade`: shed `SheddablePlus` too.
    Degrade,
    /// From `critical`: refuse every new request but `CriticalPlus`, and fail readiness.
    Critical,
}

impl Pressure {
    /// A short, stable name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Warn => "warn",
            Self::Degrade => "degrade",
            Self::Critical => "critical",
        }
    }

    /// 0 to 3, for a gauge.
    pub const fn index(self) -> u8 {
        self as u8
    }
}

/// The monitors' worst level now, shared: what [`CloseConnectionsLayer`](crate::CloseConnectionsLayer),
/// the accept loop and readiness act on. Always [`Pressure::Normal`] in observe-only mode.
#[derive(Debug, Clone, Default)]
pub struct PressureHandle(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    level: AtomicU8,
    /// The resource at the worst level and its ratio, for reports (written once per sample).
    worst: Mutex<Option<(&'static str, f64)>>,
}

impl PressureHandle {
    /// The worst level of every watched resource, as of the last sample.
    pub fn level(&self) -> Pressure {
        match self.0.level.load(Ordering::Relaxed) {
            0 => Pressure::Normal,
            1 => Pressure::Warn,
            2 => Pressure::Degrade,
            _ => Pressure::Critical,
        }
    }

    /// The resource at the worst level and its last ratio, when one is above normal.
    pub fn worst(&self) -> Option<(&'static str, f64)> {
        *self
            .0
            .worst
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set(&self, level: Pressure) {
        self.0.level.store(level.index(), Ordering::Relaxed);
    }

    pub(crate) fn set_worst(&self, worst: Option<(&'static str, f64)>) {
        *self
            .0
            .worst
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = worst;
    }
}

/// The thresholds of one resource, as ratios of its limit.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `warn` | 0.80 | from here, [`Pressure::Warn`] |
/// | `degrade` | 0.90 | from here, [`Pressure::Degrade`] |
/// | `critical` | 0.95 | from here, [`Pressure::Critical`] |
/// | `resume` | 0.80 | below this (for `dwell`), back to [`Pressure::Normal`] |
/// | `dwell` | 1 s | how long the ratio must stay below `resume` |
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct Thresholds {
    /// Ratio where [`Pressure::Warn`] starts.
    pub warn: f64,
    /// Ratio where [`Pressure::Degrade`] starts.
    pub degrade: f64,
    /// Ratio where [`Pressure::Critical`] starts.
    pub critical: f64,
    /// Ratio below which the resource recovers.
    pub resume: f64,
    /// How long the ratio must stay below `resume` to recover.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub dwell: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warn: 0.80,
            degrade: 0.90,
            critical: 0.95,
            resume: 0.80,
            dwell: Duration::from_secs(1),
        }
    }
}

impl Thresholds {
    /// Checks `0 < resume <= warn <= degrade <= critical <= 1` and a dwell of at most an hour.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first key out of order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ordered = [
            ("resume", self.resume),
            ("warn", self.warn),
            ("degrade", self.degrade),
            ("critical", self.critical),
        ];
        for (key, value) in ordered {
            if !(value > 0.0 && value <= 1.0) {
                return Err(ConfigError::new(
                    key,
                    format!("{value} must be above 0 and at most 1"),
                ));
            }
        }
        for pair in ordered.windows(2) {
            let ((low_key, low), (high_key, high)) = (pair[0], pair[1]);
            if low > high {
                return Err(ConfigError::new(
                    high_key,
                    format!("{high} must not be below {low_key} ({low})"),
                ));
            }
        }
        if self.dwell > Duration::from_secs(3600) {
            return Err(ConfigError::new("dwell", "must be at most an hour"));
        }
        Ok(())
    }

    /// The level a ratio calls for, without hysteresis.
    pub fn level_of(&self, ratio: f64) -> Pressure {
        if ratio >= self.critical {
            Pressure::Critical
        } else if ratio >= self.degrade {
            Pressure::Degrade
        } else if ratio >= self.warn {
            Pressure::Warn
        } else {
            Pressure::Normal
        }
    }
}

/// One resource's level over time.
#[derive(Debug)]
pub(crate) struct Tracker {
    thresholds: Thresholds,
    level: Pressure,
    below_since: Option<Instant>,
}

impl Tracker {
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            level: Pressure::Normal,
            below_since: None,
        }
    }

    pub(crate) fn level(&self) -> Pressure {
        self.level
    }

    /// Takes one sample; returns the old level when the level changed.
    pub(crate) fn observe(&mut self, ratio: f64, now: Instant) -> Option<Pressure> {
        let called_for = self.thresholds.level_of(ratio);
        let old = self.level;
        if called_for > old {
            self.level = called_for;
            self.below_since = None;
            return Some(old);
        }
        if old == Pressure::Normal || ratio >= self.thresholds.resume {
            self.below_since = None;
            return None;
        }
        let since = *self.below_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.thresholds.dwell {
            self.level = called_for;
            self.below_since = None;
            return Some(old);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn climbs_at_once_and_recovers_only_below_resume_after_the_dwell() {
        let mut t = Tracker::new(Thresholds::default());
        let tick = Duration::from_millis(250);
        let mut now = Instant::now();
        let mut step = |t: &mut Tracker, ratio: f64| {
            now += tick;
            t.observe(ratio, now);
            t.level()
        };
        assert_eq!(step(&mut t, 0.5), Pressure::Normal);
        assert_eq!(step(&mut t, 0.85), Pressure::Warn);
        assert_eq!(
            step(&mut t, 0.97),
            Pressure::Critical,
            "straight to critical"
        );
        assert_eq!(
            step(&mut t, 0.85),
            Pressure::Critical,
            "85% is not below resume"
        );
        assert_eq!(
            step(&mut t, 0.79),
            Pressure::Critical,
            "below resume, dwell started"
        );
        assert_eq!(step(&mut t, 0.79), Pressure::Critical);
        assert_eq!(
            step(&mut t, 0.81),
            Pressure::Critical,
            "back above: dwell reset"
        );
        // The first sample below resume starts the dwell; 1 s later (four ticks on) it recovers.
        for _ in 0..4 {
            assert_eq!(step(&mut t, 0.70), Pressure::Critical);
        }
        assert_eq!(
            step(&mut t, 0.70),
            Pressure::Normal,
            "a whole second below resume"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_resume_keeps_warn_between_resume_and_warn() {
        let thresholds = Thresholds {
            resume: 0.6,
            ..Thresholds::default()
        };
        let mut t = Tracker::new(thresholds);
        let now = Instant::now();
        assert_eq!(t.observe(0.91, now), Some(Pressure::Normal));
        assert_eq!(t.level(), Pressure::Degrade);
        assert_eq!(t.observe(0.7, now + Duration::from_secs(5)), None);
        assert_eq!(t.level(), Pressure::Degrade, "above resume: no recovery");
        t.observe(0.5, now + Duration::from_secs(6));
        assert_eq!(
            t.observe(0.5, now + Duration::from_secs(7)),
            Some(Pressure::Degrade)
        );
        assert_eq!(t.level(), Pressure::Normal);
    }

    #[test]
    fn thresholds_out_of_order_are_errors() {
        assert!(Thresholds::default().validate().is_ok());
        let bad = Thresholds {
            degrade: 0.7,
            ..Thresholds::default()
        };
        assert_eq!(bad.validate().unwrap_err().key(), "degrade");
        let bad = Thresholds {
            resume: 0.9,
            ..Thresholds::default()
        };
        assert_eq!(bad.validate().unwrap_err().key(), "warn");
        let bad = Thresholds {
            critical: f64::NAN,
            ..Thresholds::default()
        };
        assert_eq!(bad.validate().unwrap_err().key(), "critical");
    }
}
