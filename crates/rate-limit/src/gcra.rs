//! The generic cell rate algorithm (GCRA): one theoretical arrival time (TAT) per key.
//!
//! A policy of `rate` requests per `period` admits one request every *emission interval*
//! `T = period / rate`, and tolerates bursts of `burst` requests: a request arriving at `now` is
//! admitted when `max(TAT, now) + T - now <= burst × T`, and then moves the key's TAT to
//! `max(TAT, now) + T`. A TAT in the past means a full bucket, which is why an idle key carries no
//! state and can be forgotten. Times are nanoseconds since the limiter's epoch.
//!
//! Integer nanoseconds keep the arithmetic exact and cheap (no floating point on the request
//! path); `T` is rounded down, which over a day of 86 400 requests errs by at most 86 µs in the
//! client's favour.

use std::time::Duration;

/// The verdict of one policy for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Admitted: store `tat`; `remaining` more requests would be admitted right now; the bucket
    /// is full again in `reset` ns.
    Admit {
        tat: u64,
        remaining: u64,
        reset: u64,
    },
    /// Refused: the next request is admitted in `retry_after` ns; the bucket is full again in
    /// `reset` ns.
    Deny { retry_after: u64, reset: u64 },
}

/// The parameters of one policy, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// `T`: the time one request "costs".
    interval: u64,
    /// `burst × T`: how far ahead of now a key's TAT may run.
    tolerance: u64,
}

impl Gcra {
    /// `rate` (at least 1) per `period`, bursts of `burst` (at least 1).
    pub(crate) fn new(rate: u32, period: Duration, burst: u32) -> Self {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let interval = (period / u64::from(rate.max(1))).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// The emission interval `T` in ns.
    pub(crate) fn interval(self) -> u64 {
        self.interval
    }

    /// Checks a request at `now` against a key whose TAT is `tat` (0 for a key never seen).
    pub(crate) fn check(self, tat: u64, now: u64) -> Verdict {
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.interval);
        let debt = new_tat - now;
        if debt <= self.tolerance {
            Verdict::Admit {
                tat: new_tat,
                remaining: (self.tolerance - debt) / self.interval,
                reset: debt,
            }
        } else {
            Verdict::Deny {
                retry_after: debt - self.tolerance,
                reset: base - now,
            }
        }
    }

    /// What a key at `tat` looks like at `now` without spending anything: the requests it would
    /// admit and the time until its bucket is full. For the fields of a request that another
    /// policy refused.
    pub(crate) fn peek(self, tat: u64, now: u64) -> (u64, u64) {
        let debt = tat.saturating_sub(now);
        (self.tolerance.saturating_sub(debt) / self.interval, debt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn admits_the_burst_then_one_per_interval() {
        // 10 per second, bursts of 3.
        let g = Gcra::new(10, Duration::from_secs(1), 3);
        assert_eq!(g.interval(), SEC / 10);
        let mut tat = 0;
        let now = 5 * SEC;
        for expected_remaining in [2, 1, 0] {
            match g.check(tat, now) {
                Verdict::Admit {
                    tat: t, remaining, ..
                } => {
                    assert_eq!(remaining, expected_remaining);
                    tat = t;
                }
                Verdict::Deny { .. } => panic!("burst refused"),
            }
        }
        assert_eq!(
            g.check(tat, now),
            Verdict::Deny {
                retry_after: SEC / 10,
                reset: 3 * SEC / 10
            }
        );
        // One interval later exactly one more request fits.
        let later = now + SEC / 10;
        assert!(matches!(
            g.check(tat, later),
            Verdict::Admit { remaining: 0, .. }
        ));
        assert!(matches!(
            g.check(tat, later - 1),
            Verdict::Deny { retry_after: 1, .. }
        ));
    }

    #[test]
    fn peek_spends_nothing() {
        let g = Gcra::new(60, Duration::from_secs(60), 60);
        assert_eq!(g.peek(0, 100 * SEC), (60, 0));
        assert_eq!(g.peek(100 * SEC + 2 * SEC, 100 * SEC), (58, 2 * SEC));
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let g = Gcra::new(1, Duration::from_secs(u64::MAX), u32::MAX);
        assert!(matches!(g.check(0, 0), Verdict::Admit { .. }));
        assert!(matches!(
            g.check(u64::MAX, u64::MAX),
            Verdict::Admit { .. } | Verdict::Deny { .. }
        ));
    }
}
