//! Whether the overload level has stayed in `Critical`'s part of the band long enough to shed
//! `Critical` (`CoDel`'s rule: a queue is bad only when it does not drain within an interval).
//!
//! Under a steady overload the in-flight count is a sawtooth, not a plateau: the lower classes
//! are shed near the top of their parts, completions drop the count, and the admissions in
//! between push it up again. Its peaks reach `Critical`'s part even though shedding the lower
//! classes keeps the server within capacity, so a `Critical` request arriving at a peak would be
//! shed for a queue that empties a few milliseconds later. Remembering when the level entered
//! that part, and shedding `Critical` only once it has stayed there for `interval`, separates
//! those peaks from an overload that shedding every lower class did not relieve.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// One atomic word: 0 while the level is below `Critical`'s part, otherwise when it entered it
/// (nanoseconds since `epoch`, plus one so that the moment itself is not 0).
pub(crate) struct Sustain {
    interval: u64,
    epoch: Instant,
    since: AtomicU64,
}

impl Sustain {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            // Validation bounds the interval far below u64::MAX nanoseconds.
            interval: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        let nanos = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    /// The level is below `Critical`'s part: forget when it entered. A load, and a store only on
    /// the way out.
    #[inline]
    pub(crate) fn below(&self) {
        if self.since.load(Ordering::Relaxed) != 0 {
            self.since.store(0, Ordering::Relaxed);
        }
    }

    /// The level is in `Critical`'s part (or above it): remembers when it entered and, when
    /// `critical` (a `Critical` request is being decided), answers whether it has stayed there for
    /// the whole interval. Reads the clock only on entry and for `Critical` requests.
    pub(crate) fn above(&self, critical: bool) -> bool {
        if self.interval == 0 {
            return true;
        }
        let mut since = self.since.load(Ordering::Relaxed);
        if since != 0 && !critical {
            return false; // Only `Critical` asks; the entry time is already recorded.
        }
        let now = self.now();
        if since == 0 {
            match self
                .since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return false,
                Err(entered) => since = entered,
            }
        }
        critical && now.saturating_sub(since) >= self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn critical_waits_for_the_interval_above_the_part() {
        let sustain = Sustain::new(INTERVAL);
        assert!(!sustain.above(true), "just entered");
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(!sustain.above(false));
        assert!(!sustain.above(true), "not yet a whole interval");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(sustain.above(true), "a whole interval above the part");
        assert!(!sustain.above(false), "the answer is only for Critical");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dip_below_the_part_restarts_the_interval() {
        let sustain = Sustain::new(INTERVAL);
        assert!(!sustain.above(false), "entered");
        tokio::time::advance(INTERVAL / 2).await;
        sustain.below();
        sustain.below();
        tokio::time::advance(INTERVAL / 2).await;
        assert!(!sustain.above(true), "re-entered just now");
        tokio::time::advance(INTERVAL).await;
        assert!(sustain.above(true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_interval_sheds_at_once() {
        let sustain = Sustain::new(Duration::ZERO);
        assert!(sustain.above(true));
    }
}
