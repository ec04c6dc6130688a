//! Exponential backoff with full jitter, and the injectable random source behind the jitter.

use std::{fmt, sync::Arc, time::Duration};

/// A source of uniform random numbers in `[0, 1)` for the jitter.
///
/// The default draws from `fastrand`'s thread-local generator. Tests inject a fixed value or a
/// seeded sequence so that a schedule is exact; every `Fn() -> f64` closure is a source. Values
/// outside `[0, 1]` (or NaN) are clamped, so a bad source cannot produce a sleep past the cap.
///
/// ```
/// use palisade_retry::RandomSource;
///
/// let half = || 0.5;
/// assert_eq!(half.sample(), 0.5);
/// ```
pub trait RandomSource: Send + Sync {
    /// A number in `[0, 1)`.
    fn sample(&self) -> f64;
}

impl<F> RandomSource for F
where
    F: Fn() -> f64 + Send + Sync,
{
    fn sample(&self) -> f64 {
        self()
    }
}

/// The default source: `fastrand`'s thread-local generator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastRand;

impl RandomSource for FastRand {
    fn sample(&self) -> f64 {
        fastrand::f64()
    }
}

/// A shared random source with a `Debug` that says what it is.
#[derive(Clone)]
pub(crate) struct Random(pub(crate) Arc<dyn RandomSource>);

impl Random {
    pub(crate) fn default_source() -> Self {
        Self(Arc::new(FastRand))
    }

    pub(crate) fn sample(&self) -> f64 {
        let x = self.0.sample();
        if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
    }
}

impl fmt::Debug for Random {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RandomSource")
    }
}

/// Exponential backoff with full jitter (Brooker, AWS Architecture Blog, 2015): before retry
/// `n` (1 for the first retry) the caller sleeps a uniform random time in
/// `[0, min(cap, base * 2^(n-1)))`.
///
/// Full jitter spreads the retries of many clients that failed together over the whole
/// interval, so they do not come back in lockstep; of the jittered variants it does the least
/// total work. The defaults (base 100 ms, cap 400 ms) give ceilings of 100, 200, 400, 400... ms.
///
/// ```
/// use std::time::Duration;
/// use palisade_retry::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
/// assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(400));
/// assert_eq!(backoff.ceiling(9), Duration::from_millis(400));
/// assert_eq!(backoff.delay(2, 0.5), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap` (a `base` above `cap` acts as `cap`).
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The ceiling of the sleep before retry `retry` (1-based): `min(cap, base * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The sleep before retry `retry` for a random draw `random` in `[0, 1]` (clamped).
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        self.ceiling(retry).mul_f64(random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new(100 * MS, 400 * MS);
        let ceilings: Vec<_> = (1..=5).map(|n| b.ceiling(n)).collect();
        assert_eq!(ceilings, [100 * MS, 200 * MS, 400 * MS, 400 * MS, 400 * MS]);
        // No overflow however many retries.
        assert_eq!(b.ceiling(u32::MAX), 400 * MS);
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling() {
        let b = Backoff::new(100 * MS, 400 * MS);
        assert_eq!(b.delay(1, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 1.0), 400 * MS);
        assert_eq!(b.delay(3, 7.0), 400 * MS, "clamped");
        assert_eq!(b.delay(3, -1.0), Duration::ZERO, "clamped");
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..10_000 {
            let d = b.delay(2, FastRand.sample());
            assert!(d < 200 * MS);
            seen_low |= d < 20 * MS;
            seen_high |= d > 180 * MS;
        }
        assert!(seen_low && seen_high, "the whole interval is used");
    }
}
