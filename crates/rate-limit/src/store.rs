//! The in-memory store: one sharded map per policy from a key's hash to its TAT, with a hard cap
//! on keys and eviction done inline, so there is no cleanup task to start and nothing grows
//! without bound under a flood of distinct clients.
//!
//! # Layout and cost
//!
//! A key is stored as a 64-bit seeded hash of the key (foldhash, see [`LocalStore`]), and its TAT
//! as a `u64` of nanoseconds: 16 bytes of payload plus the hash table's control byte and slack, about
//! 18 to 36 bytes per key depending on where the table is between doublings (measured: see the
//! crate README). Two keys share state only on a 64-bit hash collision, which clients cannot steer
//! without the seed.
//!
//! Each shard is a `std::sync::Mutex` around a `HashMap`. A check of one key is one lock, a probe
//! and a store: an `AtomicU64` per key would still need the shard's lock held (entries move when
//! the table grows), so a lock word is touched either way, and the plain `u64` lets eviction and
//! the cap live in the same critical section.
//!
//! # Eviction
//!
//! - **Idle keys**: a key whose TAT is in the past has a full bucket, the same as a key never
//!   seen, so it is dropped without changing any decision. A shard sweeps them out when an insert
//!   finds it at twice the size it had after its last sweep (amortised O(1) per insert) or more
//!   than 10 s after its last sweep, and returns memory to the allocator when the table is mostly
//!   empty.
//! - **The cap, full of live keys**: the shard forgets the eighth of its keys that are closest to
//!   expiry (smallest TAT). Those carry the least state (their buckets are nearly full again), so
//!   forgetting them admits the least extra traffic; keys deep in debt, the abusive ones, are
//!   kept. Freeing an eighth at once keeps the O(n) selection amortised over n/8 inserts.
//!
//! # Several policies: check all, then commit
//!
//! A request checked against several policies reads every key first; if any policy refuses,
//! nothing is written. Otherwise each key is committed in turn, re-checked under its lock. If a
//! concurrent request spent the last slot of a later key in between, the request is refused and
//! the keys already committed are rolled back when no other request has touched them since;
//! when one has, the charge stays. Races therefore never admit more than the limits; at worst a
//! refused request costs one slot of a policy that admitted it.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    net::{IpAddr, Ipv4Addr},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use crate::{
    backend::{Decision, MAX_POLICIES_PER_RULE, PolicyState},
    gcra::{Gcra, Verdict},
    key::Key,
    metrics::StoreMetrics,
};

/// Keys are already seeded hashes: hashing them again would only cost time.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else so it stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>;

/// The smallest size that triggers an idle sweep: below it a sweep is not worth its scan.
const MIN_SWEEP: usize = 64;
/// A shard that takes new keys is swept at least this often (ns), so keys left by a burst of
/// clients go away even when the shard does not grow further.
const SWEEP_INTERVAL: u64 = 10_000_000_000;

struct Shard {
    map: Map,
    cap: usize,
    /// Sweep when an insert finds this many keys...
    sweep_at: usize,
    /// ...or arrives after this time.
    sweep_after: u64,
}

impl Shard {
    fn new(cap: usize) -> Self {
        Self {
            map: Map::default(),
            cap,
            sweep_at: MIN_SWEEP.min(cap),
            sweep_after: SWEEP_INTERVAL,
        }
    }

    fn tat(&self, hash: u64) -> u64 {
        self.map.get(&hash).copied().unwrap_or(0)
    }

    /// Adds a key known to be absent.
    fn insert_new(&mut self, hash: u64, tat: u64, now: u64, metrics: &StoreMetrics) {
        if self.map.len() >= self.sweep_at
            || (now >= self.sweep_after && self.map.len() >= MIN_SWEEP.min(self.cap))
        {
            self.sweep(now, metrics);
        }
        self.map.insert(hash, tat);
        metrics.keys.increment(1.0);
    }

    #[cold]
    fn sweep(&mut self, now: u64, metrics: &StoreMetrics) {
        let before = self.map.len();
        self.map.retain(|_, tat| *tat > now);
        let idle = before - self.map.len();
        let mut forgotten = 0;
        if self.map.len() >= self.cap {
            let free = (self.cap / 8).max(1);
            let need = self.map.len() - (self.cap - free);
            let mut tats: Vec<u64> = self.map.values().copied().collect();
            let threshold = *tats.select_nth_unstable(need - 1).1;
            drop(tats);
            self.map.retain(|_, tat| {
                if forgotten < need && *tat <= threshold {
                    forgotten += 1;
                    false
                } else {
                    true
                }
            });
        }
        let len = self.map.len();
        if self.map.capacity() > 4 * len.max(MIN_SWEEP) {
            self.map.shrink_to(2 * len);
        }
        self.sweep_at = (2 * len).clamp(MIN_SWEEP.min(self.cap), self.cap);
        self.sweep_after = now.saturating_add(SWEEP_INTERVAL);
        #[allow(clippy::cast_precision_loss)] // a key count, far below 2^52
        metrics.keys.decrement((idle + forgotten) as f64);
        metrics.evicted_idle.increment(idle as u64);
        metrics.evicted_capacity.increment(forgotten as u64);
    }
}

/// A cache line of its own per shard, so two threads on neighbouring shards do not share one.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// The keys of one policy.
pub(crate) struct PolicyStore {
    gcra: Gcra,
    shards: Box<[Padded]>,
    mask: usize,
    metrics: StoreMetrics,
}

impl PolicyStore {
    pub(crate) fn new(gcra: Gcra, max_keys: usize, metrics: StoreMetrics) -> Self {
        // Enough shards to keep two threads on a million keys apart, few enough that small caps
        // stay exact per shard.
        let shards = (max_keys / 4096).next_power_of_two().clamp(1, 64);
        let (base, extra) = (max_keys / shards, max_keys % shards);
        let shards: Box<[Padded]> = (0..shards)
            .map(|i| Padded(Mutex::new(Shard::new(base + usize::from(i < extra)))))
            .collect();
        Self {
            gcra,
            mask: shards.len() - 1,
            shards,
            metrics,
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // Bits 32.. pick the shard; the table uses the low bits (bucket) and the top 7 (tag).
        #[allow(clippy::cast_possible_truncation)]
        let index = (hash >> 32) as usize & self.mask;
        // A panic while holding the lock cannot leave the map inconsistent: every write is one
        // insert or retain, so a poisoned lock is still good.
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self, hash: u64) -> u64 {
        self.shard(hash).tat(hash)
    }

    /// Checks and, if admitted, charges one request: `Ok((previous TAT, verdict))`.
    #[inline]
    fn commit(&self, hash: u64, now: u64) -> Result<(u64, Verdict), Verdict> {
        let mut shard = self.shard(hash);
        // One probe for a known key (the common case), written in place.
        if let Some(slot) = shard.map.get_mut(&hash) {
            let tat = *slot;
            return match self.gcra.check(tat, now) {
                verdict @ Verdict::Admit { tat: new_tat, .. } => {
                    *slot = new_tat;
                    Ok((tat, verdict))
                }
                verdict @ Verdict::Deny { .. } => Err(verdict),
            };
        }
        match self.gcra.check(0, now) {
            verdict @ Verdict::Admit { tat: new_tat, .. } => {
                shard.insert_new(hash, new_tat, now, &self.metrics);
                Ok((0, verdict))
            }
            verdict @ Verdict::Deny { .. } => Err(verdict),
        }
    }

    /// Undoes a charge, unless another request changed the key since.
    fn rollback(&self, hash: u64, previous: u64, written: u64) {
        let mut shard = self.shard(hash);
        if let Some(slot) = shard.map.get_mut(&hash)
            && *slot == written
        {
            *slot = previous;
        }
    }

    /// Keys held now (all shards; for tests and the benchmark).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

fn state(verdict: Verdict) -> PolicyState {
    match verdict {
        Verdict::Admit {
            remaining, reset, ..
        } => PolicyState::admitted(remaining, Duration::from_nanos(reset)),
        Verdict::Deny { retry_after, reset } => PolicyState::limited(
            Duration::from_nanos(retry_after),
            Duration::from_nanos(reset),
        ),
    }
}

/// The in-memory backend: a [`PolicyStore`] per policy and the key hasher.
///
/// The hash is the key's identity (two keys with one hash share a budget) and picks its shard and
/// bucket, so clients must not be able to choose colliding keys. foldhash under a random seed
/// (a per-process secret plus one per store) is a tenth of `SipHash`'s cost on an address. It is
/// only "minimally DoS-resistant": an attacker who sees hash outputs or table iteration order
/// could recover the seed. Neither leaves this process: the store never iterates keys into a
/// response or a metric, and the only visible effect of a hash, a shared budget, needs a full
/// 64-bit collision, so the seed cannot be probed for one.
pub(crate) struct LocalStore {
    policies: Box<[PolicyStore]>,
    hasher: foldhash::fast::RandomState,
}

impl LocalStore {
    pub(crate) fn new(policies: Box<[PolicyStore]>) -> Self {
        Self {
            policies,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    #[inline]
    pub(crate) fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The hash of a client-IP key: the same as [`Self::hash`] of the key the client-IP extractor
    /// gives for this (already grouped) address, without going through a [`Key`] match.
    #[inline]
    pub(crate) fn hash_ip(&self, ip: Option<IpAddr>) -> u64 {
        match ip {
            // `Key`'s `Hash` writes exactly this word for an IPv4 key (and `hash_one` of a `u64`
            // is one `write_u64`), so both paths give a client one budget.
            Some(IpAddr::V4(v4)) => self.hash_ipv4(v4),
            Some(ip) => self.hash(&Key::ip(ip)),
            None => self.hash(&crate::key::UNKNOWN_CLIENT),
        }
    }

    /// The hash of an IPv4 client's key, as [`Self::hash_ip`] gives it.
    #[inline]
    pub(crate) fn hash_ipv4(&self, v4: Ipv4Addr) -> u64 {
        self.hasher.hash_one(crate::key::ipv4_word(v4))
    }

    pub(crate) fn policy(&self, index: usize) -> &PolicyStore {
        &self.policies[index]
    }

    /// Checks and charges one request against `(policy index, key hash)` pairs at `now` (ns since
    /// the epoch); see the module docs for the multi-policy protocol.
    pub(crate) fn check(&self, pairs: &[(usize, u64)], now: u64) -> Decision {
        if let [(policy, hash)] = pairs {
            return Decision::from_states([self.check_one(*policy, *hash, now)]);
        }
        let pairs = &pairs[..pairs.len().min(MAX_POLICIES_PER_RULE)];
        // Check all...
        let mut tats = [0u64; MAX_POLICIES_PER_RULE];
        let mut refused = false;
        for (i, &(policy, hash)) in pairs.iter().enumerate() {
            tats[i] = self.policies[policy].read(hash);
            refused |= matches!(
                self.policies[policy].gcra.check(tats[i], now),
                Verdict::Deny { .. }
            );
        }
        if refused {
            return self.refused(pairs, &tats, now);
        }
        // ...then commit.
        let mut written = [(0u64, 0u64); MAX_POLICIES_PER_RULE];
        let mut decision = Decision::new();
        for (i, &(policy, hash)) in pairs.iter().enumerate() {
            match self.policies[policy].commit(hash, now) {
                Ok((previous, verdict @ Verdict::Admit { tat, .. })) => {
                    written[i] = (previous, tat);
                    decision.push(state(verdict));
                }
                Ok((_, verdict)) | Err(verdict) => {
                    // A concurrent request took the last slot: refuse, undo what we charged.
                    for (j, &(p, h)) in pairs[..i].iter().enumerate() {
                        self.policies[p].rollback(h, written[j].0, written[j].1);
                        tats[j] = written[j].0;
                    }
                    let mut decision = self.refused(&pairs[..i], &tats, now);
                    decision.push(state(verdict));
                    for &(p, h) in &pairs[i + 1..] {
                        decision.push(self.peek(p, self.policies[p].read(h), now));
                    }
                    return decision;
                }
            }
        }
        decision
    }

    /// Checks and charges one request against one policy's key.
    #[inline]
    pub(crate) fn check_one(&self, policy: usize, hash: u64, now: u64) -> PolicyState {
        match self.policies[policy].commit(hash, now) {
            Ok((_, verdict)) | Err(verdict) => state(verdict),
        }
    }

    /// The states of a refused request: refusing policies with their waits, the others as they
    /// stand (nothing was charged).
    fn refused(&self, pairs: &[(usize, u64)], tats: &[u64], now: u64) -> Decision {
        let mut decision = Decision::new();
        for (i, &(policy, _)) in pairs.iter().enumerate() {
            let verdict = self.policies[policy].gcra.check(tats[i], now);
            decision.push(match verdict {
                Verdict::Deny { .. } => state(verdict),
                Verdict::Admit { .. } => self.peek(policy, tats[i], now),
            });
        }
        decision
    }

    fn peek(&self, policy: usize, tat: u64, now: u64) -> PolicyState {
        let (remaining, reset) = self.policies[policy].gcra.peek(tat, now);
        PolicyState::admitted(remaining, Duration::from_nanos(reset))
    }
}

#[cfg(test)]
mod tests;
