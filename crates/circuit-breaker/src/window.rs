//! Sliding windows of call outcomes, with atomics only: recording a call takes no lock and
//! allocates nothing.
//!
//! - [`CountWindow`]: the last `size` calls. A ring of one-byte slots and one packed word of
//!   totals (calls, failures, slow calls). A call overwrites the slot at `cursor % size`; when the
//!   slot already holds the same outcome (the steady state of a healthy dependency) nothing is
//!   written at all, so a healthy call costs one `fetch_add` on the cursor. Otherwise the slot is
//!   swapped and the difference added to the totals, so the totals always equal the sum of the
//!   slots once concurrent recorders finish.
//! - [`TimeWindow`]: the last `buckets × bucket` of time. Each bucket holds three words
//!   (calls, failures, slow calls), each tagged with the bucket's epoch in its high 32 bits, so a
//!   bucket left over from an earlier lap is recognised and replaced by the first writer of the
//!   new epoch with one compare-and-swap, without a lock and without losing concurrent records.

use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed, Padded};

/// The outcome of one call, as a window records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// The call failed.
    pub failure: bool,
    /// The call took at least the slow-call duration.
    pub slow: bool,
}

/// Calls, failures and slow calls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Recorded calls (ignored outcomes are not recorded).
    pub calls: u32,
    /// Failed calls.
    pub failures: u32,
    /// Slow calls (successful or not).
    pub slow: u32,
}

impl Totals {
    /// The failure rate in `[0, 1]`, or `None` without calls.
    pub(crate) fn failure_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| f64::from(self.failures) / f64::from(self.calls))
    }

    /// The slow-call rate in `[0, 1]`, or `None` without calls.
    pub(crate) fn slow_call_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| f64::from(self.slow) / f64::from(self.calls))
    }
}

/// A count-based or time-based window.
#[derive(Debug)]
pub(crate) enum Window {
    /// The last N calls.
    Count(CountWindow),
    /// The last N seconds.
    Time(TimeWindow),
}

impl Window {
    /// Records `sample` at `now` (ms; only time windows read it). Returns the window's totals when
    /// this record may have raised a rate or reached the minimum number of calls, so that the
    /// caller evaluates the thresholds only then.
    #[inline]
    pub(crate) fn record(&self, sample: Sample, now: u64) -> Option<Totals> {
        match self {
            Self::Count(w) => w.record(sample),
            Self::Time(w) => w.record(sample, now),
        }
    }

    /// The totals at `now` (ms).
    pub(crate) fn totals(&self, now: u64) -> Totals {
        match self {
            Self::Count(w) => w.totals(),
            Self::Time(w) => w.totals(now),
        }
    }

    /// Empties the window.
    pub(crate) fn clear(&self) {
        match self {
            Self::Count(w) => w.clear(),
            Self::Time(w) => w.clear(),
        }
    }

    /// Whether recording needs the current time.
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Self::Time(_))
    }

    /// Whether this is a full count window of successes only, which a success leaves unchanged.
    #[inline]
    pub(crate) fn is_all_successes(&self) -> bool {
        match self {
            Self::Count(w) => w.is_all_successes(),
            Self::Time(_) => false,
        }
    }
}

const EMPTY: u8 = 0;
const SUCCESS: u8 = 1;
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// The largest count-based window (the totals live in 21-bit fields).
pub(crate) const MAX_COUNT_WINDOW: u32 = 1 << 20;

fn code(sample: Sample) -> u8 {
    1 + u8::from(sample.failure) + 2 * u8::from(sample.slow)
}

/// What a slot contributes to the packed totals.
fn contribution(code: u8) -> u64 {
    if code == EMPTY {
        return 0;
    }
    let failure = u64::from((code - 1) & 1);
    let slow = u64::from((code - 1) >> 1);
    1 | failure << FIELD_BITS | slow << (2 * FIELD_BITS)
}

fn unpack(word: u64) -> Totals {
    // Each field is masked to 21 bits, so the casts are exact.
    #[allow(clippy::cast_possible_truncation)]
    let field = |shift: u32| ((word >> shift) & FIELD_MASK) as u32;
    Totals {
        calls: field(0),
        failures: field(FIELD_BITS),
        slow: field(2 * FIELD_BITS),
    }
}

/// The last `size` calls; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct CountWindow {
    cursor: Padded<AtomicU32>,
    totals: Padded<AtomicU64>,
    slots: Box<[AtomicU8]>,
    size: u32,
    /// `u64::MAX / size + 1`: `cursor % size` by two multiplications (Lemire's fastmod).
    modulus: u64,
}

/// `a % d` with `m = u64::MAX / d + 1` (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019): exact for every 32-bit `a` and `d`.
fn fastmod(a: u32, m: u64, d: u32) -> u32 {
    let low = m.wrapping_mul(u64::from(a));
    // The high half of a 64 x 32-bit product is below d, a u32.
    #[allow(clippy::cast_possible_truncation)]
    let r = ((u128::from(low) * u128::from(d)) >> 64) as u32;
    r
}

impl CountWindow {
    /// A window of the last `size` calls (`1..=`[`MAX_COUNT_WINDOW`]; clamped).
    pub(crate) fn new(size: u32) -> Self {
        let size = size.clamp(1, MAX_COUNT_WINDOW);
        Self {
            cursor: Padded(AtomicU32::new(0)),
            totals: Padded(AtomicU64::new(0)),
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
            size,
            modulus: (u64::MAX / u64::from(size)).wrapping_add(1),
        }
    }

    /// Records one call; see [`Window::record`].
    #[inline]
    pub(crate) fn record(&self, sample: Sample) -> Option<Totals> {
        let new = code(sample);
        // A full window of successes stays one whichever success a new success replaces: the
        // healthy steady state reads one word and writes nothing, so threads do not contend.
        if new == SUCCESS && self.is_all_successes() {
            return None;
        }
        let cursor = self.cursor.fetch_add(1, Relaxed);
        let index = fastmod(cursor, self.modulus, self.size);
        let slot = &self.slots[index as usize];
        // Overwriting an outcome with the same outcome changes nothing: no write.
        if slot.load(Relaxed) == new {
            return None;
        }
        let old = slot.swap(new, Relaxed);
        if old == new {
            return None;
        }
        let delta = contribution(new).wrapping_sub(contribution(old));
        let after = self.totals.fetch_add(delta, Relaxed).wrapping_add(delta);
        let may_raise = sample.failure || sample.slow || old == EMPTY;
        if !may_raise {
            return None;
        }
        // Two recorders racing for one slot a whole lap apart can apply their differences out of
        // order, leaving the totals briefly implausible (a field borrowed from its neighbour); the
        // totals are exact again once both finish, and an implausible reading is not evaluated.
        let totals = unpack(after);
        self.plausible(totals).then_some(totals)
    }

    /// Whether the window is full of successes (and nothing else).
    #[inline]
    pub(crate) fn is_all_successes(&self) -> bool {
        self.totals.load(Relaxed) == u64::from(self.size)
    }

    fn plausible(&self, t: Totals) -> bool {
        t.calls <= self.size && t.failures <= t.calls && t.slow <= t.calls
    }

    /// The totals (clamped into range while recorders race; see [`CountWindow::record`]).
    pub(crate) fn totals(&self) -> Totals {
        let t = unpack(self.totals.load(Relaxed));
        let calls = t.calls.min(self.size);
        Totals {
            calls,
            failures: t.failures.min(calls),
            slow: t.slow.min(calls),
        }
    }

    /// Empties every slot, subtracting exactly what was removed, so that recorders running at the
    /// same time keep the totals consistent.
    pub(crate) fn clear(&self) {
        let removed = self
            .slots
            .iter()
            .map(|slot| contribution(slot.swap(EMPTY, Relaxed)))
            .fold(0u64, u64::wrapping_add);
        self.totals.fetch_sub(removed, Relaxed);
    }

    /// The raw totals word and the sum of the slots, for model checks: equal when no recorder is
    /// running.
    #[cfg(test)]
    pub(crate) fn consistency(&self) -> (Totals, Totals) {
        let sum = self
            .slots
            .iter()
            .map(|slot| contribution(slot.load(Relaxed)))
            .fold(0u64, u64::wrapping_add);
        (unpack(self.totals.load(Relaxed)), unpack(sum))
    }
}

/// One bucket of a time window: three epoch-tagged counters.
#[derive(Debug)]
struct Bucket {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// The largest number of buckets of a time window.
pub(crate) const MAX_BUCKETS: u32 = 1000;

/// The epoch tag: never 0, which marks a cleared counter.
fn tag(epoch: u64) -> u32 {
    // The remainder is below u32::MAX, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let t = (epoch % u64::from(u32::MAX)) as u32 + 1;
    t
}

fn tag_of(word: u64) -> u32 {
    // The high 32 bits.
    #[allow(clippy::cast_possible_truncation)]
    let t = (word >> 32) as u32;
    t
}

fn count_of(word: u64) -> u32 {
    // The low 32 bits.
    #[allow(clippy::cast_possible_truncation)]
    let c = word as u32;
    c
}

/// Whether a counter tagged `seen` already counts for epoch `tag` (or for a later one, which a
/// recorder with a slightly older clock reading may meet: its call is counted there).
fn current_or_newer(seen: u32, tag: u32) -> bool {
    // Reinterpreting the wrapped difference as signed orders tags across the wrap.
    #[allow(clippy::cast_possible_wrap)]
    let ahead = seen.wrapping_sub(tag) as i32;
    seen != 0 && ahead >= 0
}

/// Adds one to `counter` for epoch `tag`, replacing a count left over from an older epoch.
fn add(counter: &AtomicU64, tag: u32) {
    let prev = counter.fetch_add(1, Relaxed);
    if current_or_newer(tag_of(prev), tag) {
        return;
    }
    // The counter belonged to an older epoch: replace it with this epoch's first call.
    let fresh = u64::from(tag) << 32 | 1;
    let mut seen = prev.wrapping_add(1);
    loop {
        match counter.compare_exchange_weak(seen, fresh, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) if current_or_newer(tag_of(actual), tag) => {
                // Another recorder replaced it first, wiping our increment of the old epoch.
                let prev = counter.fetch_add(1, Relaxed);
                if current_or_newer(tag_of(prev), tag) {
                    return;
                }
                seen = prev.wrapping_add(1);
            }
            Err(actual) => seen = actual,
        }
    }
}

/// The last `buckets × bucket_ms` of time; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_ms: u64,
    buckets: Box<[Bucket]>,
    /// The latest epoch seen and its bucket index (`epoch << 16 | index`), so that most records
    /// find their bucket with a load and a multiplication instead of two divisions.
    current: Padded<AtomicU64>,
    /// One more than the latest epoch with a failure or a slow call; 0 for none. While it lies
    /// inside the window, successes are evaluated too: they may bring the window to its minimum
    /// number of calls.
    last_bad: Padded<AtomicU64>,
}

impl TimeWindow {
    /// A window of `buckets` buckets of `bucket_ms` each (both clamped to at least 1; buckets to
    /// at most [`MAX_BUCKETS`]).
    pub(crate) fn new(bucket_ms: u64, buckets: u32) -> Self {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        Self {
            bucket_ms: bucket_ms.max(1),
            buckets: (0..buckets)
                .map(|_| Bucket {
                    calls: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    slow: AtomicU64::new(0),
                })
                .collect(),
            current: Padded(AtomicU64::new(0)),
            last_bad: Padded(AtomicU64::new(0)),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// The epoch of `now` and its bucket index.
    #[inline]
    fn locate(&self, now: u64) -> (u64, usize) {
        let cached = self.current.load(Relaxed);
        let epoch = cached >> 16;
        let start = epoch.saturating_mul(self.bucket_ms);
        // The index is below the bucket count (at most 1000), stored in 16 bits.
        #[allow(clippy::cast_possible_truncation)]
        if now >= start && now - start < self.bucket_ms {
            return (epoch, (cached & 0xFFFF) as usize);
        }
        let epoch = now / self.bucket_ms;
        let index = epoch % self.len();
        if epoch > cached >> 16 {
            self.current.fetch_max(epoch << 16 | index, Relaxed);
        }
        #[allow(clippy::cast_possible_truncation)]
        (epoch, index as usize)
    }

    /// Records one call at `now` (ms); see [`Window::record`].
    #[inline]
    pub(crate) fn record(&self, sample: Sample, now: u64) -> Option<Totals> {
        let (epoch, index) = self.locate(now);
        let tag = tag(epoch);
        let bucket = &self.buckets[index];
        add(&bucket.calls, tag);
        if sample.failure {
            add(&bucket.failures, tag);
        }
        if sample.slow {
            add(&bucket.slow, tag);
        }
        if sample.failure || sample.slow {
            if self.last_bad.load(Relaxed) < epoch + 1 {
                self.last_bad.fetch_max(epoch + 1, Relaxed);
            }
            return Some(self.totals_at(epoch));
        }
        let last_bad = self.last_bad.load(Relaxed);
        (last_bad != 0 && (epoch + 1).saturating_sub(last_bad) < self.len())
            .then(|| self.totals_at(epoch))
    }

    fn totals_at(&self, epoch: u64) -> Totals {
        let now_tag = tag(epoch);
        let len = self.buckets.len();
        let count = |word: u64| {
            let t = tag_of(word);
            let age = now_tag.wrapping_sub(t);
            if t != 0 && (age as usize) < len {
                count_of(word)
            } else {
                0
            }
        };
        let mut totals = Totals::default();
        for bucket in &*self.buckets {
            totals.calls = totals
                .calls
                .saturating_add(count(bucket.calls.load(Relaxed)));
            totals.failures = totals
                .failures
                .saturating_add(count(bucket.failures.load(Relaxed)));
            totals.slow = totals.slow.saturating_add(count(bucket.slow.load(Relaxed)));
        }
        // Counters are read one by one while recorders run: keep the reading self-consistent.
        totals.failures = totals.failures.min(totals.calls);
        totals.slow = totals.slow.min(totals.calls);
        totals
    }

    /// The totals of the buckets inside the window at `now` (ms).
    pub(crate) fn totals(&self, now: u64) -> Totals {
        self.totals_at(now / self.bucket_ms)
    }

    /// Empties every bucket.
    pub(crate) fn clear(&self) {
        for bucket in &*self.buckets {
            bucket.calls.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
            bucket.slow.store(0, Relaxed);
        }
        self.last_bad.store(0, Relaxed);
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };
    const SLOW: Sample = Sample {
        failure: false,
        slow: true,
    };
    const SLOW_FAIL: Sample = Sample {
        failure: true,
        slow: true,
    };

    fn totals(calls: u32, failures: u32, slow: u32) -> Totals {
        Totals {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn count_window_keeps_the_last_n_calls() {
        let w = CountWindow::new(4);
        assert_eq!(w.record(OK), Some(totals(1, 0, 0)), "filling: evaluate");
        assert_eq!(w.record(FAIL), Some(totals(2, 1, 0)));
        assert_eq!(w.record(SLOW), Some(totals(3, 1, 1)));
        assert_eq!(w.record(SLOW_FAIL), Some(totals(4, 2, 2)));
        // Full: the oldest (a success) is replaced by a failure.
        assert_eq!(w.record(FAIL), Some(totals(4, 3, 2)));
        // A success replacing a failure cannot raise a rate: no evaluation.
        assert_eq!(w.record(OK), None);
        assert_eq!(w.totals(), totals(4, 2, 2));
        for _ in 0..4 {
            w.record(OK);
        }
        assert_eq!(w.totals(), totals(4, 0, 0));
        assert_eq!(w.record(OK), None, "success over success: nothing written");
        w.clear();
        assert_eq!(w.totals(), Totals::default());
        assert_eq!(w.record(FAIL), Some(totals(1, 1, 0)));
        let (word, sum) = w.consistency();
        assert_eq!(word, sum);
    }

    #[test]
    fn count_window_stays_consistent_under_threads() {
        let w = std::sync::Arc::new(CountWindow::new(7));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let s = Sample {
                            failure: (i + t) % 3 == 0,
                            slow: (i * 7 + t) % 5 == 0,
                        };
                        w.record(s);
                        if i % 5000 == 0 && t == 0 {
                            w.clear();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (word, sum) = w.consistency();
        assert_eq!(word, sum);
        assert!(word.calls <= 7);
    }

    #[test]
    fn time_window_drops_old_buckets() {
        // 5 buckets of 1 s.
        let w = TimeWindow::new(1_000, 5);
        assert_eq!(
            w.record(OK, 0),
            None,
            "no failure in the window: no evaluation"
        );
        assert_eq!(w.record(FAIL, 500), Some(totals(2, 1, 0)));
        assert_eq!(
            w.record(OK, 1_200),
            Some(totals(3, 1, 0)),
            "a failure is in the window"
        );
        assert_eq!(w.record(SLOW, 4_999), Some(totals(4, 1, 1)));
        assert_eq!(w.totals(4_999), totals(4, 1, 1));
        // At 5 s the first bucket (0..1 s) has left the window.
        assert_eq!(w.totals(5_000), totals(2, 0, 1));
        // The bucket of 5..6 s reuses the slot of 0..1 s: the old counts are replaced.
        assert_eq!(w.record(OK, 5_100), Some(totals(3, 0, 1)));
        assert_eq!(w.totals(5_100), totals(3, 0, 1));
        // Much later, everything has left.
        assert_eq!(w.totals(60_000), Totals::default());
        assert_eq!(
            w.record(OK, 60_000),
            None,
            "the last failure left the window"
        );
        assert_eq!(w.totals(60_000), totals(1, 0, 0));
        w.clear();
        assert_eq!(w.totals(60_000), Totals::default());
    }

    #[test]
    fn time_window_counts_every_call_under_threads() {
        let w = std::sync::Arc::new(TimeWindow::new(10, 4));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (w, barrier) = (w.clone(), barrier.clone());
                std::thread::spawn(move || {
                    // Every thread enters each epoch together: rotations race with increments.
                    for epoch in 0..10u64 {
                        barrier.wait();
                        for _ in 0..1_000 {
                            w.record(FAIL, epoch * 10 + 5);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Epochs 6..=9 are in the window at 99 ms: 4 epochs x 4 threads x 1000 records.
        assert_eq!(w.totals(99), totals(16_000, 16_000, 0));
    }

    #[test]
    fn fastmod_is_exact() {
        for d in [1u32, 2, 3, 7, 10, 100, 1000, 99_999, 100_000, u32::MAX] {
            let m = (u64::MAX / u64::from(d)).wrapping_add(1);
            for a in [0u32, 1, 2, 99, 100, 101, 12_345, u32::MAX - 1, u32::MAX]
                .into_iter()
                .chain((0..5000).map(|i| i * 7919))
            {
                assert_eq!(fastmod(a, m, d), a % d, "{a} % {d}");
            }
        }
    }

    #[test]
    fn a_full_window_of_successes_writes_nothing() {
        let w = CountWindow::new(3);
        for _ in 0..3 {
            w.record(OK);
        }
        let cursor = w.cursor.load(Relaxed);
        for _ in 0..10 {
            assert_eq!(w.record(OK), None);
        }
        assert_eq!(w.cursor.load(Relaxed), cursor, "the cursor did not move");
        assert_eq!(w.record(FAIL), Some(totals(3, 1, 0)));
    }

    #[test]
    fn time_window_epochs_move_backwards_safely() {
        // A recorder with an older clock reading after a newer one: counted, never misplaced
        // into a wrong bucket.
        let w = TimeWindow::new(100, 4);
        w.record(OK, 550);
        w.record(FAIL, 420);
        assert_eq!(w.totals(599), totals(2, 1, 0));
        w.record(OK, 1_000);
        assert_eq!(w.totals(1_000), totals(1, 0, 0));
    }

    #[test]
    fn tags_order_across_the_wrap() {
        assert!(current_or_newer(5, 5));
        assert!(current_or_newer(6, 5));
        assert!(!current_or_newer(4, 5));
        assert!(!current_or_newer(0, 5), "cleared");
        assert!(current_or_newer(1, u32::MAX));
        assert_eq!(tag(0), 1);
        assert_eq!(tag(u64::from(u32::MAX)), 1);
    }
}
