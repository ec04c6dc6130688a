//! The slot pool and its wait queue: the concurrency-critical core of a bulkhead, model-checked
//! under `loom` (`src/loom_tests.rs`).
//!
//! One atomic word holds the slot count and a "waiters" flag; a mutex protects the queue. While
//! nobody waits, acquire and release are one compare-and-swap each, with no lock. The flag is set
//! and cleared only under the lock, together with the queue becoming non-empty or empty, so a slot
//! is never both free and awaited: a release that sees the flag takes the lock and hands its slot
//! directly to the first waiter (highest class, then oldest). A waiter that goes away leaves the
//! queue at once; if a slot had already been handed to it, the slot is passed on, never leaked.
//!
//! With priority ordering, a full queue makes room for a request of a higher class than its lowest
//! waiter: the lowest-class, most recently queued waiter is evicted (told [`WaitState::Evicted`],
//! counted as a `queue_full` rejection) and the newcomer takes its place. Eviction only swaps one
//! waiter for another, so the slot count and the waiters flag are untouched by it.

use std::{collections::BTreeMap, task::Waker};

#[cfg(palisade_loom)]
use loom::sync::MutexGuard;
use palisade_core::{
    Priority,
    sync::{AtomicU32, Mutex, Ordering},
};
#[cfg(not(palisade_loom))]
use std::sync::MutexGuard;

use crate::metrics::Metrics;

/// A waiter's place: class rank first (0 is served first), then arrival order.
type Key = (u8, u64);

/// What [`WaitQueue::acquire_or_enqueue`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A slot was free and is now held by the caller; release it with [`WaitQueue::release`].
    Acquired,
    /// The caller waits in the queue under this ticket: poll it with [`WaitQueue::poll_ticket`],
    /// and end it with [`WaitQueue::abandon`] or [`WaitQueue::expire`] unless it was granted.
    Queued(Ticket),
    /// Every slot is taken and the queue is full (or waiting is disabled).
    Full,
}

/// Where a waiter stands: what [`WaitQueue::poll_ticket`] and [`WaitQueue::expire`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitState {
    /// Still waiting. From [`WaitQueue::expire`]: it was still waiting and has now left the queue
    /// without a slot (its wait timed out).
    Waiting,
    /// It was handed a slot, which the caller now holds; release it with [`WaitQueue::release`].
    Granted,
    /// A higher-priority request took its place in the full queue (priority ordering only): it
    /// is refused with reason `queue_full`, already counted, and holds no slot.
    Evicted,
}

/// A waiter's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(Key);

/// The slots and the queue of one bulkhead.
pub(crate) struct WaitQueue {
    /// Slots held (low 31 bits) and [`WAITERS`].
    word: AtomicU32,
    state: Mutex<State>,
    max_concurrent: u32,
    max_queued: u32,
    priority_ordering: bool,
    metrics: Metrics,
}

/// Set while the queue has waiters: fast-path acquires and releases must take the lock.
const WAITERS: u32 = 1 << 31;

struct State {
    next_seq: u64,
    waiting: BTreeMap<Key, Option<Waker>>,
    /// Waiters that were handed a slot but have not yet seen it.
    granted: Vec<Key>,
    /// Waiters evicted from a full queue that have not yet seen it. They hold no slot and no
    /// longer count as queued; the entry only carries the news to the waiter.
    evicted: Vec<Key>,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (in_flight, queued) = self.load();
        f.debug_struct("WaitQueue")
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queued", &self.max_queued)
            .field("in_flight", &in_flight)
            .field("queued", &queued)
            .field("priority_ordering", &self.priority_ordering)
            .finish_non_exhaustive()
    }
}

impl WaitQueue {
    /// A pool of `max_concurrent` slots with room for `max_queued` waiters. `name` labels the
    /// metrics. (The loom models build queues directly; the pool uses `with_metrics`.)
    #[cfg(all(test, palisade_loom))]
    pub(crate) fn new(
        name: &str,
        max_concurrent: u32,
        max_queued: u32,
        priority_ordering: bool,
    ) -> Self {
        Self::with_metrics(
            max_concurrent,
            max_queued,
            priority_ordering,
            Metrics::new(name, palisade_core::EnforcementMode::Enforce),
        )
    }

    pub(crate) fn with_metrics(
        max_concurrent: u32,
        max_queued: u32,
        priority_ordering: bool,
        metrics: Metrics,
    ) -> Self {
        metrics.in_flight.set(0.0);
        metrics.queued.set(0.0);
        Self {
            word: AtomicU32::new(0),
            state: Mutex::new(State {
                next_seq: 0,
                waiting: BTreeMap::new(),
                granted: Vec::new(),
                evicted: Vec::new(),
            }),
            max_concurrent,
            max_queued,
            priority_ordering,
            metrics,
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock (no user code runs under the lock), so a
        // poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, state: &State) {
        #[allow(clippy::cast_precision_loss)]
        self.metrics
            .queued
            .set((state.waiting.len() + state.granted.len()) as f64);
    }

    /// Requests holding a slot, and requests waiting (including those handed a slot that have not
    /// yet been polled).
    pub(crate) fn load(&self) -> (u32, usize) {
        let state = self.lock();
        let in_flight = self.word.load(Ordering::Acquire) & !WAITERS;
        (in_flight, state.waiting.len() + state.granted.len())
    }

    /// Takes a slot if one is free and nobody waits (waiters are never overtaken). Lock-free.
    pub(crate) fn try_acquire(&self) -> bool {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & WAITERS != 0 || word >= self.max_concurrent {
                return false;
            }
            match self.word.compare_exchange_weak(
                word,
                word + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.metrics.in_flight.increment(1.0);
                    return true;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Takes a slot without limit (observe-only mode): the count may exceed the maximum.
    /// Returns whether the request would have been refused at once.
    pub(crate) fn acquire_unchecked(&self) -> bool {
        let before = self.word.fetch_add(1, Ordering::Acquire) & !WAITERS;
        self.metrics.in_flight.increment(1.0);
        before >= self.max_concurrent.saturating_add(self.max_queued)
    }

    /// Takes a free slot, or a place in the queue, or neither.
    pub(crate) fn acquire_or_enqueue(&self, priority: Priority) -> Admission {
        if self.try_acquire() {
            return Admission::Acquired;
        }
        let mut state = self.lock();
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & WAITERS == 0 && word < self.max_concurrent {
                // A slot was freed meanwhile and nobody waits.
                match self.word.compare_exchange_weak(
                    word,
                    word + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.metrics.in_flight.increment(1.0);
                        return Admission::Acquired;
                    }
                    Err(actual) => word = actual,
                }
                continue;
            }
            let queued = state.waiting.len() + state.granted.len();
            if queued >= self.max_queued as usize {
                return self.evict_for(state, priority);
            }
            if word & WAITERS != 0 {
                break;
            }
            // Every slot is taken: announce a waiter, unless a release got in first.
            match self.word.compare_exchange_weak(
                word,
                word | WAITERS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        let ticket = self.enqueue(&mut state, priority);
        self.publish(&state);
        Admission::Queued(ticket)
    }

    fn rank(&self, priority: Priority) -> u8 {
        if self.priority_ordering {
            // CriticalPlus (the highest) ranks 0 and is served first.
            3 - priority as u8
        } else {
            0
        }
    }

    fn enqueue(&self, state: &mut State, priority: Priority) -> Ticket {
        let key = (self.rank(priority), state.next_seq);
        state.next_seq += 1;
        state.waiting.insert(key, None);
        Ticket(key)
    }

    /// Every slot is taken and the queue is full: the newcomer takes the place of the
    /// lowest-class, most recently queued waiter if it outranks it, so that critical requests are
    /// not turned away while sheddable ones hold queue places. Otherwise (FIFO, equal or lower
    /// class, or only granted waiters left to evict) it is refused.
    fn evict_for(&self, mut state: MutexGuard<'_, State>, priority: Priority) -> Admission {
        let rank = self.rank(priority);
        // The last key is the highest rank (lowest class), then the latest arrival. In FIFO mode
        // every rank is 0, so nobody ever outranks anybody.
        let Some((&victim, _)) = state.waiting.last_key_value().filter(|(k, _)| k.0 > rank) else {
            return Admission::Full;
        };
        let waker = state.waiting.remove(&victim).flatten();
        state.evicted.push(victim);
        let ticket = self.enqueue(&mut state, priority);
        // One waiter out, one in: the queue length, the gauge and WAITERS are unchanged.
        drop(state);
        self.metrics.rejected(crate::RejectReason::QueueFull);
        if let Some(waker) = waker {
            waker.wake();
        }
        Admission::Queued(ticket)
    }

    /// Clears [`WAITERS`] once the queue is empty; called under the lock.
    fn waiter_left(&self, state: &State) {
        if state.waiting.is_empty() {
            self.word.fetch_and(!WAITERS, Ordering::AcqRel);
        }
        self.publish(state);
    }

    /// Whether the ticket's waiter has been handed a slot (which it now holds) or evicted, or
    /// still waits; then `waker` is registered to be woken when that changes. Once it reports
    /// [`Granted`](WaitState::Granted) or [`Evicted`](WaitState::Evicted), the ticket is spent.
    pub(crate) fn poll_ticket(&self, ticket: Ticket, waker: &Waker) -> WaitState {
        let mut state = self.lock();
        if let Some(slot) = state.waiting.get_mut(&ticket.0) {
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
            return WaitState::Waiting;
        }
        self.settle(&mut state, ticket)
    }

    /// Removes a ticket that no longer waits: granted (the caller now holds the slot) or evicted.
    fn settle(&self, state: &mut State, ticket: Ticket) -> WaitState {
        if let Some(pos) = state.granted.iter().position(|k| *k == ticket.0) {
            state.granted.swap_remove(pos);
            self.publish(state);
            return WaitState::Granted;
        }
        let pos = state.evicted.iter().position(|k| *k == ticket.0);
        // Otherwise the ticket was spent already: callers never use it again.
        debug_assert!(pos.is_some(), "a spent ticket was used again");
        if let Some(pos) = pos {
            state.evicted.swap_remove(pos);
        }
        WaitState::Evicted
    }

    /// The waiter gave up (cancelled): it leaves the queue, and a slot already handed to it is
    /// passed on.
    pub(crate) fn abandon(&self, ticket: Ticket) {
        let mut state = self.lock();
        if state.waiting.remove(&ticket.0).is_some() {
            self.waiter_left(&state);
            return;
        }
        if self.settle(&mut state, ticket) == WaitState::Granted {
            self.release_locked(state);
        }
    }

    /// The waiter's time is up: [`Waiting`](WaitState::Waiting) if it was still waiting (it has
    /// now left the queue without a slot), else what happened to it in the meantime (a slot handed
    /// over at the last moment is the caller's).
    pub(crate) fn expire(&self, ticket: Ticket) -> WaitState {
        let mut state = self.lock();
        if state.waiting.remove(&ticket.0).is_some() {
            self.waiter_left(&state);
            return WaitState::Waiting;
        }
        self.settle(&mut state, ticket)
    }

    /// Evicted waiters that have not yet polled or dropped their ticket. Zero once every waiter
    /// has gone: the loom model checks this.
    #[cfg(test)]
    pub(crate) fn unseen_evictions(&self) -> usize {
        self.lock().evicted.len()
    }

    /// Returns a slot: to the first waiter if any, else to the pool (lock-free while nobody
    /// waits).
    pub(crate) fn release(&self) {
        let mut word = self.word.load(Ordering::Relaxed);
        while word & WAITERS == 0 {
            match self.word.compare_exchange_weak(
                word,
                word.saturating_sub(1),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.metrics.in_flight.decrement(1.0);
                    return;
                }
                Err(actual) => word = actual,
            }
        }
        let state = self.lock();
        self.release_locked(state);
    }

    fn release_locked(&self, mut state: MutexGuard<'_, State>) {
        let waker = if let Some((key, waker)) = state.waiting.pop_first() {
            // The slot moves to the waiter: the count is unchanged.
            state.granted.push(key);
            self.waiter_left(&state);
            waker
        } else {
            // Nobody waits, so WAITERS is clear (it only changes under the lock).
            self.word.fetch_sub(1, Ordering::Release);
            self.metrics.in_flight.decrement(1.0);
            None
        };
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
