//! Leases: a replica reserves a batch of requests for a hot key in one Redis call and spends
//! them locally; and it remembers a refusal until the key could admit a whole batch again.
//!
//! Every request spent from a lease was charged in Redis before it was admitted, so leases
//! never admit more than the policy over the lease's life; they move admissions up to
//! `ttl` later than their charge. A replica holds at most `size` unspent requests per key.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use crate::backend::{Decision, PolicyState};

/// The most keys with lease state one replica keeps; past it, keys are checked one by one.
const MAX_ENTRIES: usize = 65_536;

/// What a replica knows about one key (the tuple of keys of one request).
struct Entry {
    /// When Redis was last asked about the key: a key asked again within `ttl` is hot.
    asked: Instant,
    /// Requests reserved and not yet spent.
    tokens: u32,
    /// When the reservation lapses.
    expires: Instant,
    /// Until when the key is refused without asking.
    refused_until: Instant,
    /// A lease is being asked for: other requests meanwhile ask for themselves only, instead
    /// of each charging a lease of which at most one is kept.
    leasing_since: Option<Instant>,
    /// Redis's last answer, and when it came.
    answer: Decision,
    answered: Instant,
}

/// What to do with a request.
// Returned by value and consumed at once (like `Pending`): boxing the decision would cost the
// lease hit, the path leases exist for, an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// Decided here (a token spent, or a refusal remembered).
    Local(Decision),
    /// Ask Redis for this many requests.
    Ask(u32),
}

pub(crate) struct Leases {
    size: u32,
    ttl: Duration,
    entries: Mutex<Table>,
}

struct Table {
    map: HashMap<u64, Entry>,
    /// When a full table was last swept: at most once per TTL, so a flood of new keys into a
    /// table of live ones does not scan it on every request.
    swept: Option<Instant>,
}

impl Leases {
    pub(crate) fn new(size: u32, ttl: Duration) -> Self {
        Self {
            size,
            ttl,
            entries: Mutex::new(Table {
                map: HashMap::new(),
                swept: None,
            }),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Decides from what this replica holds, or says how many requests to ask for.
    pub(crate) fn take(&self, key: u64, now: Instant) -> Lease {
        let mut table = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let ttl = self.ttl;
        let Some(entry) = table.map.get_mut(&key) else {
            if table.map.len() >= MAX_ENTRIES
                && table
                    .swept
                    .is_none_or(|at| now.saturating_duration_since(at) >= ttl)
            {
                table.map.retain(|_, e| e.live(now, ttl));
                table.swept = Some(now);
            }
            if table.map.len() < MAX_ENTRIES {
                table.map.insert(key, Entry::new(now));
            }
            return Lease::Ask(1);
        };
        if now >= entry.expires {
            // A lapsed lease is gone: its requests were charged too long ago to be spent.
            entry.tokens = 0;
        }
        if entry.tokens > 0 {
            entry.tokens -= 1;
            return Lease::Local(entry.spent(now));
        }
        if now < entry.refused_until {
            return Lease::Local(entry.refused(now));
        }
        let hot = now.saturating_duration_since(entry.asked) < ttl;
        entry.asked = now;
        let leasing = entry
            .leasing_since
            .is_some_and(|since| now.saturating_duration_since(since) < ttl);
        if hot && !leasing {
            entry.leasing_since = Some(now);
            Lease::Ask(self.size)
        } else {
            Lease::Ask(1)
        }
    }

    /// Records a lease: `granted` requests were charged, one of them the request that asked.
    pub(crate) fn record_grant(&self, key: u64, now: Instant, granted: u32, answer: &Decision) {
        self.update(key, |entry| {
            entry.answer = *answer;
            entry.answered = now;
            if now >= entry.expires {
                entry.tokens = 0;
            }
            if granted > 1 {
                entry.leasing_since = None;
                // Never more than one lease's worth held: a surplus stays charged and unspent
                // (an under-admission, never an over-admission).
                entry.tokens = (entry.tokens + granted - 1).min(self.size.saturating_sub(1));
                entry.expires = now + self.ttl;
            }
        });
    }

    /// Records that the key is refused for `wait`; `answer` holds the states to answer with
    /// (its limited ones get the remaining wait).
    pub(crate) fn record_refusal(&self, key: u64, now: Instant, answer: &Decision, wait: Duration) {
        self.update(key, |entry| {
            entry.answer = *answer;
            entry.answered = now;
            entry.refused_until = now + wait;
            entry.leasing_since = None;
        });
    }

    fn update(&self, key: u64, f: impl FnOnce(&mut Entry)) {
        let mut table = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = table.map.get_mut(&key) {
            f(entry);
        }
    }

    /// Keys with lease state (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            asked: now,
            tokens: 0,
            expires: now,
            refused_until: now,
            leasing_since: None,
            answer: Decision::new(),
            answered: now,
        }
    }

    fn live(&self, now: Instant, ttl: Duration) -> bool {
        now.saturating_duration_since(self.asked) < ttl
            || (self.tokens > 0 && now < self.expires)
            || now < self.refused_until
    }

    /// The fields of a request served from the lease: what Redis had left plus what this
    /// replica still holds, and the reset counted down since the answer.
    fn spent(&self, now: Instant) -> Decision {
        let elapsed = now.saturating_duration_since(self.answered);
        Decision::from_states(self.answer.states().iter().map(|s| {
            PolicyState::admitted(
                s.remaining + u64::from(self.tokens),
                s.reset.saturating_sub(elapsed),
            )
        }))
    }

    /// The remembered refusal, its wait counted down.
    fn refused(&self, now: Instant) -> Decision {
        let elapsed = now.saturating_duration_since(self.answered);
        let wait = self.refused_until.saturating_duration_since(now);
        Decision::from_states(self.answer.states().iter().map(|s| {
            let reset = s.reset.saturating_sub(elapsed);
            if s.limited {
                PolicyState::limited(wait.max(Duration::from_micros(1)), reset)
            } else {
                PolicyState::admitted(s.remaining, reset)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(100);

    fn granted(remaining: u64) -> Decision {
        Decision::from_states([PolicyState::admitted(remaining, Duration::from_secs(1))])
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_asked_twice_within_the_ttl_gets_a_lease_and_spends_it_locally() {
        let leases = Leases::new(8, TTL);
        let t0 = Instant::now();
        // Cold: one request at a time.
        assert_eq!(leases.take(1, t0), Lease::Ask(1));
        leases.record_grant(1, t0, 1, &granted(50));
        // Asked again soon: hot, ask for a lease of 8.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(leases.take(1, t1), Lease::Ask(8));
        leases.record_grant(1, t1, 8, &granted(42));
        // Seven requests are decided here, then Redis is asked again.
        for left in (0..7).rev() {
            match leases.take(1, t1 + Duration::from_millis(1)) {
                Lease::Local(d) => {
                    assert!(d.admitted());
                    assert_eq!(d.states()[0].remaining, 42 + left);
                }
                Lease::Ask(n) => panic!("asked for {n} with tokens left"),
            }
        }
        assert_eq!(leases.take(1, t1 + Duration::from_millis(2)), Lease::Ask(8));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unspent_lease_lapses_after_the_ttl() {
        let leases = Leases::new(8, TTL);
        let t0 = Instant::now();
        assert_eq!(leases.take(1, t0), Lease::Ask(1));
        leases.record_grant(1, t0, 8, &granted(0));
        let late = t0 + TTL + Duration::from_millis(1);
        // Lapsed, and not hot any more: one request.
        assert_eq!(leases.take(1, late), Lease::Ask(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_lease_never_comes_back() {
        let leases = Leases::new(8, TTL);
        let t0 = Instant::now();
        leases.take(1, t0);
        leases.record_grant(1, t0, 8, &granted(0));
        // Long after the lease lapsed, a cold ask is granted one request: the old tokens
        // must not be revived with a fresh expiry.
        let late = t0 + 10 * TTL;
        assert_eq!(leases.take(1, late), Lease::Ask(1));
        leases.record_grant(1, late, 1, &granted(0));
        assert!(matches!(leases.take(1, late), Lease::Ask(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn one_lease_is_asked_for_at_a_time() {
        let leases = Leases::new(8, TTL);
        let t0 = Instant::now();
        leases.take(1, t0);
        leases.record_grant(1, t0, 1, &granted(10));
        // Hot: the first asks for a lease, the ones while it is in flight for themselves.
        assert_eq!(leases.take(1, t0), Lease::Ask(8));
        assert_eq!(leases.take(1, t0), Lease::Ask(1));
        leases.record_grant(1, t0, 8, &granted(2));
        assert!(matches!(leases.take(1, t0), Lease::Local(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_remembered_for_its_wait() {
        let leases = Leases::new(8, TTL);
        let t0 = Instant::now();
        assert_eq!(leases.take(1, t0), Lease::Ask(1));
        let refusal = Decision::from_states([PolicyState::limited(
            Duration::from_millis(30),
            Duration::from_secs(1),
        )]);
        leases.record_refusal(1, t0, &refusal, Duration::from_millis(30));
        match leases.take(1, t0 + Duration::from_millis(10)) {
            Lease::Local(d) => {
                assert!(!d.admitted());
                assert_eq!(d.states()[0].retry_after, Duration::from_millis(20));
            }
            other @ Lease::Ask(_) => panic!("{other:?}"),
        }
        assert!(matches!(
            leases.take(1, t0 + Duration::from_millis(30)),
            Lease::Ask(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_leases_never_leave_more_than_one_leases_worth() {
        let leases = Leases::new(8, TTL);
        let t0 = Instant::now();
        leases.take(1, t0);
        leases.record_grant(1, t0, 8, &granted(0));
        leases.record_grant(1, t0, 8, &granted(0));
        let local = (0..20)
            .filter(|_| matches!(leases.take(1, t0), Lease::Local(_)))
            .count();
        assert_eq!(local, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_dropped_when_the_table_is_full() {
        let leases = Leases::new(8, TTL);
        let t0 = Instant::now();
        for key in 0..MAX_ENTRIES as u64 {
            leases.take(key, t0);
        }
        assert_eq!(leases.len(), MAX_ENTRIES);
        leases.take(u64::MAX, t0 + TTL);
        assert_eq!(leases.len(), 1);
        // Full of live keys: a new key is not tracked, and the table is not swept again
        // before a TTL has passed.
        for key in 0..MAX_ENTRIES as u64 {
            leases.take(key, t0 + TTL);
        }
        assert_eq!(leases.take(u64::MAX - 1, t0 + TTL), Lease::Ask(1));
        assert_eq!(leases.len(), MAX_ENTRIES);
    }
}
