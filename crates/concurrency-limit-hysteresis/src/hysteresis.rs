//! The lock-free hysteresis state machine shared by the request and connection limiters.
//!
//! One atomic word holds the count and the shedding flag, so every decision sees a consistent
//! pair and every transition is a single compare-and-swap:
//!
//! - *accepting*: admit while the count is below the high-water mark; the admission that reaches
//!   the mark switches to *shedding*;
//! - *shedding*: reject, except `critical` callers, who may use the headroom up to the hard
//!   maximum; switch back to *accepting* once the count has fallen to the low-water mark and the
//!   minimum dwell time has passed.
//!
//! The clock is read only when a dwell time is configured.
//!
//! [`Publication`] decides when readers of the state (an overload signal, gauges) need to be shown
//! it again, so that most operations publish nothing.

use std::time::Duration;

use palisade_core::sync::{AtomicU64, Ordering};
use tokio::time::Instant;

use crate::config::Thresholds;

const COUNT_MASK: u64 = u32::MAX as u64;
const SHEDDING: u64 = 1 << 32;

fn count(word: u64) -> u32 {
    // Masked to 32 bits first, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let n = (word & COUNT_MASK) as u32;
    n
}

fn shedding(word: u64) -> bool {
    word & SHEDDING != 0
}

fn pack(count: u32, shedding: bool) -> u64 {
    u64::from(count) | if shedding { SHEDDING } else { 0 }
}

/// Why a caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RejectReason {
    /// The limiter is shedding (between its high-water mark and the maximum).
    Shedding,
    /// The hard maximum is reached.
    AtMaximum,
}

impl RejectReason {
    /// The metric label.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Shedding => "shedding",
            Self::AtMaximum => "at_maximum",
        }
    }
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Accepting → shedding.
    StartedShedding,
    /// Shedding → accepting.
    StoppedShedding,
}

/// The result of one acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acquired {
    /// `None` when admitted; the reason when refused (in observe-only mode the caller is counted
    /// and served anyway, and this says what enforcement would have done).
    pub refused: Option<RejectReason>,
    /// Whether the caller now holds a slot that it must release.
    pub counted: bool,
    /// The count after the operation.
    pub count: u32,
    /// The state change this operation caused, if any.
    pub transition: Option<Transition>,
}

/// The result of one release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Released {
    /// The count after the operation.
    pub count: u32,
    /// The state change this operation caused, if any.
    pub transition: Option<Transition>,
    /// The count is at the low-water mark but the dwell time has not passed: the caller should
    /// check again at [`Hysteresis::dwell_deadline`].
    pub exit_deferred: bool,
}

/// Count plus shedding flag, with high/low water marks and a critical reserve.
#[derive(Debug)]
pub(crate) struct Hysteresis {
    word: AtomicU64,
    /// When shedding last started, in nanoseconds since `epoch`.
    shedding_since: AtomicU64,
    epoch: Instant,
    thresholds: Thresholds,
    dwell: Duration,
    critical_reserve: bool,
}

impl Hysteresis {
    /// A state machine at count 0, accepting.
    pub(crate) fn new(thresholds: Thresholds, dwell: Duration, critical_reserve: bool) -> Self {
        Self {
            word: AtomicU64::new(0),
            shedding_since: AtomicU64::new(0),
            epoch: Instant::now(),
            thresholds,
            dwell,
            critical_reserve,
        }
    }

    /// The thresholds.
    pub(crate) fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// The current count and shedding flag.
    pub(crate) fn load(&self) -> (u32, bool) {
        let word = self.word.load(Ordering::Acquire);
        (count(word), shedding(word))
    }

    fn nanos_since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the dwell time has passed since shedding started (always, without a dwell time).
    fn dwell_passed(&self) -> bool {
        if self.dwell.is_zero() {
            return true;
        }
        let since = self.shedding_since.load(Ordering::Acquire);
        let now = self.nanos_since_epoch(Instant::now());
        now.saturating_sub(since) >= u64::try_from(self.dwell.as_nanos()).unwrap_or(u64::MAX)
    }

    /// When a deferred exit may happen.
    pub(crate) fn dwell_deadline(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.shedding_since.load(Ordering::Acquire)) + self.dwell
    }

    /// The common case of [`acquire`](Self::acquire) alone: accepting, and the new caller stays
    /// below the high-water mark, so only the count changes, whatever the caller's priority and
    /// the enforcement mode. One compare-and-swap; returns the count after it, or `None` when the
    /// full decision is needed (then call [`acquire`](Self::acquire)).
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<u32> {
        // The shedding flag sits above the count, so this one comparison checks both that the
        // limiter is accepting and that the count stays below high water after this admission.
        let limit = u64::from(self.thresholds.high);
        let mut word = self.word.load(Ordering::Relaxed);
        while word + 1 < limit {
            match self.word.compare_exchange_weak(
                word,
                word + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(count(word + 1)),
                Err(actual) => word = actual,
            }
        }
        None
    }

    /// Tries to take a slot. `critical` callers may use the reserve above the high-water mark;
    /// with `enforce` false every caller is counted and `refused` says what enforcement would do.
    pub(crate) fn acquire(&self, critical: bool, enforce: bool) -> Acquired {
        let Thresholds { max, high, low } = self.thresholds;
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let (n, was_shedding) = (count(word), shedding(word));
            // A shedding limiter that has drained to low water resumes on the next arrival too,
            // not only on a release: the dwell time may have ended while it was idle.
            let is_shedding = was_shedding && !(n <= low && self.dwell_passed());
            let accepting = !is_shedding && n < high;
            let reserve = is_shedding && critical && self.critical_reserve && n < max;
            let refused = if accepting || reserve {
                None
            } else if n >= max {
                Some(RejectReason::AtMaximum)
            } else {
                Some(RejectReason::Shedding)
            };
            let counted = refused.is_none() || !enforce;
            let next_count = n + u32::from(counted);
            let next_shedding = is_shedding || next_count >= high;
            let transition = match (was_shedding, next_shedding) {
                (false, true) => Some(Transition::StartedShedding),
                (true, false) => Some(Transition::StoppedShedding),
                _ => None,
            };
            if transition == Some(Transition::StartedShedding) && !self.dwell.is_zero() {
                // Stored before the state flips, so whoever sees the flag also sees a start time
                // no earlier than the flip: the dwell can only be measured long, never short.
                self.shedding_since
                    .store(self.nanos_since_epoch(Instant::now()), Ordering::Release);
            }
            let next = pack(next_count, next_shedding);
            if next == word {
                return Acquired {
                    refused,
                    counted,
                    count: n,
                    transition: None,
                };
            }
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Acquired {
                        refused,
                        counted,
                        count: next_count,
                        transition,
                    };
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The common case of [`release`](Self::release) alone: accepting, so no state change and no
    /// deferred exit can follow. One compare-and-swap; returns the count after it, or `None` when
    /// the limiter is shedding (then call [`release`](Self::release)).
    #[inline]
    pub(crate) fn try_release(&self) -> Option<u32> {
        let mut word = self.word.load(Ordering::Relaxed);
        while !shedding(word) {
            debug_assert!(count(word) > 0, "release without a slot");
            let next = word.saturating_sub(1);
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(count(next)),
                Err(actual) => word = actual,
            }
        }
        None
    }

    /// Gives a slot back.
    pub(crate) fn release(&self) -> Released {
        let low = self.thresholds.low;
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let (n, was_shedding) = (count(word), shedding(word));
            debug_assert!(n > 0, "release without a slot");
            let next_count = n.saturating_sub(1);
            let at_low = was_shedding && next_count <= low;
            let exit = at_low && self.dwell_passed();
            let next = pack(next_count, was_shedding && !exit);
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Released {
                        count: next_count,
                        transition: exit.then_some(Transition::StoppedShedding),
                        exit_deferred: at_low && !exit,
                    };
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Leaves the shedding state if the count is at or below low water and the dwell time has
    /// passed; for a timer that fires at the end of a deferred exit.
    pub(crate) fn try_stop_shedding(&self) -> Option<Transition> {
        let low = self.thresholds.low;
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if !shedding(word) || count(word) > low || !self.dwell_passed() {
                return None;
            }
            let next = pack(count(word), false);
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Transition::StoppedShedding),
                Err(actual) => word = actual,
            }
        }
    }
}

/// Set in [`Publication`]'s word while somebody publishes; above any state word.
const PUBLISHING: u64 = 1 << 63;

/// What readers of a [`Hysteresis`] (an overload signal, gauges) were last shown, so that it is
/// published again only when they would notice: another shedding flag, zero exactly, other counts
/// to within `step`. Most operations then publish nothing, at the cost of one load and a
/// comparison.
///
/// After each operation, call [`is_stale`](Self::is_stale) with the state it left behind (or any
/// state read after it), and [`publish`](Self::publish) when it says so. Once the operations
/// stop, the last publication shows the final state (to within `step`, and exactly at zero):
/// publications run one at a time, whoever finds one running leaves its change to it, and the
/// publisher reads the state again, with a read-modify-write, after it is done. Every change of
/// the state is a read-modify-write too, so either that re-read sees the change, or it
/// synchronises with the change and the changer's check sees the new publication.
#[derive(Debug)]
pub(crate) struct Publication {
    /// The state word readers were shown, or'ed with [`PUBLISHING`] while somebody publishes.
    shown: AtomicU64,
    step: u64,
}

impl Publication {
    /// Nothing published yet (as if count 0, accepting, were); counts are republished once they
    /// move `step` (at least 1) away from the last publication.
    pub(crate) fn new(step: u32) -> Self {
        Self {
            shown: AtomicU64::new(0),
            step: u64::from(step.max(1)),
        }
    }

    /// Whether readers need to be shown `count` and `shedding`. No while somebody publishes: the
    /// publisher will read the state again when done.
    #[inline]
    pub(crate) fn is_stale(&self, count: u32, shedding: bool) -> bool {
        let word = pack(count, shedding);
        let shown = self.shown.load(Ordering::Acquire);
        // Counts stay far below 2^32, so words with different flags are far apart: the distance
        // covers the flag.
        word != shown
            && (count == 0 || word.abs_diff(shown) >= self.step)
            && shown & PUBLISHING == 0
    }

    /// Shows the current state of `state` through `show(count, shedding)`, again until it is
    /// stable; returns at once if somebody else is publishing (they will see this caller's change).
    pub(crate) fn publish(&self, state: &Hysteresis, mut show: impl FnMut(u32, bool)) {
        if self.shown.fetch_or(PUBLISHING, Ordering::Acquire) & PUBLISHING != 0 {
            return;
        }
        // The caller's own change at least; later ones are caught by the re-read below.
        let mut word = state.word.load(Ordering::Acquire);
        loop {
            show(count(word), shedding(word));
            // A swap, not a store: every write of `shown` is then a read-modify-write, which
            // loom models exactly (it lets a plain store slip between another thread's read and
            // write of a read-modify-write: tokio-rs/loom#254).
            let before = self.shown.swap(word, Ordering::Release);
            debug_assert!(before & PUBLISHING != 0, "published without the flag");
            // Changes made while the flag was set were left to us. A read-modify-write reads the
            // latest state (see the type's docs).
            let now = state.word.fetch_add(0, Ordering::AcqRel);
            if now == word
                || !self.is_stale(count(now), shedding(now))
                || self.shown.fetch_or(PUBLISHING, Ordering::Acquire) & PUBLISHING != 0
            {
                return;
            }
            word = now;
        }
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    fn machine(max: u32, high: u32, low: u32, dwell: Duration) -> Hysteresis {
        Hysteresis::new(Thresholds { max, high, low }, dwell, true)
    }

    fn admit(h: &Hysteresis) -> Acquired {
        h.acquire(false, true)
    }

    #[test]
    fn accepts_until_high_water_then_sheds() {
        let h = machine(10, 8, 6, Duration::ZERO);
        for i in 1..8 {
            let a = admit(&h);
            assert_eq!((a.refused, a.count, a.transition), (None, i, None));
        }
        let eighth = admit(&h);
        assert_eq!(eighth.refused, None);
        assert_eq!(eighth.transition, Some(Transition::StartedShedding));
        assert_eq!(h.load(), (8, true));
        let ninth = admit(&h);
        assert_eq!(ninth.refused, Some(RejectReason::Shedding));
        assert!(!ninth.counted);
        assert_eq!(h.load(), (8, true), "a refusal takes no slot");
    }

    #[test]
    fn keeps_shedding_until_low_water() {
        let h = machine(10, 8, 5, Duration::ZERO);
        for _ in 0..8 {
            admit(&h);
        }
        for expected in [7, 6] {
            assert_eq!(
                h.release(),
                Released {
                    count: expected,
                    transition: None,
                    exit_deferred: false
                }
            );
            assert_eq!(
                admit(&h).refused,
                Some(RejectReason::Shedding),
                "{expected} is between the marks"
            );
        }
        let at_low = h.release();
        assert_eq!(
            (at_low.count, at_low.transition),
            (5, Some(Transition::StoppedShedding))
        );
        assert_eq!(h.load(), (5, false));
        assert_eq!(admit(&h).refused, None);
    }

    #[test]
    fn critical_callers_use_the_reserve_up_to_the_maximum() {
        let h = machine(10, 8, 6, Duration::ZERO);
        for _ in 0..8 {
            admit(&h);
        }
        assert_eq!(admit(&h).refused, Some(RejectReason::Shedding));
        assert_eq!(h.acquire(true, true).refused, None);
        assert_eq!(h.acquire(true, true).refused, None);
        assert_eq!(h.load(), (10, true));
        assert_eq!(h.acquire(true, true).refused, Some(RejectReason::AtMaximum));
        assert_eq!(admit(&h).refused, Some(RejectReason::AtMaximum));
    }

    #[test]
    fn without_a_reserve_critical_callers_are_shed_too() {
        let h = Hysteresis::new(
            Thresholds {
                max: 10,
                high: 8,
                low: 6,
            },
            Duration::ZERO,
            false,
        );
        for _ in 0..8 {
            admit(&h);
        }
        assert_eq!(h.acquire(true, true).refused, Some(RejectReason::Shedding));
    }

    #[test]
    fn critical_callers_below_high_water_are_ordinary() {
        let h = machine(10, 8, 6, Duration::ZERO);
        let a = h.acquire(true, true);
        assert_eq!((a.refused, a.count), (None, 1));
        assert_eq!(h.load(), (1, false));
    }

    #[tokio::test(start_paused = true)]
    async fn dwell_time_defers_the_exit() {
        let h = machine(4, 2, 0, Duration::from_secs(10));
        admit(&h);
        assert_eq!(admit(&h).transition, Some(Transition::StartedShedding));
        h.release();
        let drained = h.release();
        assert_eq!(drained.count, 0);
        assert_eq!(drained.transition, None);
        assert!(drained.exit_deferred);
        assert_eq!(
            admit(&h).refused,
            Some(RejectReason::Shedding),
            "still within the dwell"
        );
        assert_eq!(h.try_stop_shedding(), None);

        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(h.try_stop_shedding(), None);
        assert_eq!(h.dwell_deadline(), h.epoch + Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(h.try_stop_shedding(), Some(Transition::StoppedShedding));
        assert_eq!(h.load(), (0, false));
    }

    #[tokio::test(start_paused = true)]
    async fn an_arrival_after_the_dwell_resumes_admission() {
        let h = machine(4, 2, 0, Duration::from_secs(1));
        admit(&h);
        admit(&h);
        h.release();
        h.release();
        tokio::time::advance(Duration::from_secs(2)).await;
        let a = admit(&h);
        assert_eq!(a.refused, None);
        assert_eq!(a.transition, Some(Transition::StoppedShedding));
        assert_eq!(h.load(), (1, false));
    }

    #[tokio::test(start_paused = true)]
    async fn the_dwell_restarts_with_each_shedding_episode() {
        let h = machine(4, 2, 0, Duration::from_secs(5));
        admit(&h);
        admit(&h);
        tokio::time::advance(Duration::from_secs(6)).await;
        h.release();
        assert_eq!(h.release().transition, Some(Transition::StoppedShedding));
        admit(&h);
        assert_eq!(admit(&h).transition, Some(Transition::StartedShedding));
        h.release();
        assert!(
            h.release().exit_deferred,
            "a new episode waits a full dwell again"
        );
    }

    #[test]
    fn observe_only_counts_everyone_and_reports_what_it_would_do() {
        let h = machine(3, 2, 1, Duration::ZERO);
        assert_eq!(h.acquire(false, false).refused, None);
        assert_eq!(
            h.acquire(false, false).transition,
            Some(Transition::StartedShedding)
        );
        let third = h.acquire(false, false);
        assert_eq!(
            (third.refused, third.counted, third.count),
            (Some(RejectReason::Shedding), true, 3)
        );
        let fourth = h.acquire(false, false);
        assert_eq!(
            (fourth.refused, fourth.count),
            (Some(RejectReason::AtMaximum), 4)
        );
        for _ in 0..3 {
            h.release();
        }
        assert_eq!(h.load(), (1, false));
    }

    #[test]
    fn the_fast_paths_take_only_what_changes_nothing_but_the_count() {
        let h = machine(10, 3, 1, Duration::ZERO);
        assert_eq!(h.try_acquire(), Some(1));
        assert_eq!(h.try_acquire(), Some(2));
        assert_eq!(h.try_acquire(), None, "the third reaches high water");
        assert_eq!(h.load(), (2, false), "a refused fast path changes nothing");
        assert_eq!(
            h.acquire(false, true).transition,
            Some(Transition::StartedShedding)
        );
        assert_eq!(h.try_release(), None, "shedding: the full release decides");
        assert_eq!(h.load(), (3, true));
        h.release();
        assert_eq!(h.release().transition, Some(Transition::StoppedShedding));
        assert_eq!(h.try_release(), Some(0));
        assert_eq!(h.load(), (0, false));
    }

    #[test]
    fn with_a_high_water_mark_of_one_the_fast_path_never_admits() {
        let h = machine(2, 1, 0, Duration::ZERO);
        assert_eq!(h.try_acquire(), None);
        assert_eq!(h.load(), (0, false));
    }

    fn publication(h: &Hysteresis, p: &Publication) -> Vec<(u32, bool)> {
        let mut shown = Vec::new();
        p.publish(h, |count, shedding| shown.push((count, shedding)));
        shown
    }

    #[test]
    fn publication_skips_what_readers_would_not_notice() {
        let h = machine(1000, 800, 600, Duration::ZERO);
        let p = Publication::new(10);
        assert!(!p.is_stale(0, false), "starts as if idle were shown");
        assert!(!p.is_stale(9, false), "within the step");
        assert!(p.is_stale(10, false), "a step away");
        assert!(p.is_stale(3, true), "another flag");
        for _ in 0..12 {
            h.acquire(false, true);
        }
        assert_eq!(publication(&h, &p), [(12, false)]);
        assert!(!p.is_stale(12, false));
        assert!(!p.is_stale(3, false), "within the step below");
        assert!(p.is_stale(0, false), "zero is shown exactly");
        assert!(p.is_stale(12, true));
    }

    #[test]
    fn a_publication_in_progress_takes_over_later_changes() {
        let h = machine(1000, 800, 600, Duration::ZERO);
        let p = Publication::new(1);
        h.acquire(false, true);
        let mut shown = Vec::new();
        p.publish(&h, |count, shedding| {
            shown.push((count, shedding));
            // A change while publishing: its maker finds the publication running and leaves it.
            if shown.len() == 1 {
                h.acquire(false, true);
                assert!(!p.is_stale(2, false));
                assert!(publication(&h, &p).is_empty());
            }
        });
        assert_eq!(
            shown,
            [(1, false), (2, false)],
            "published again after the change"
        );
        assert!(!p.is_stale(2, false));
    }
}
