//! The lock-free state machine of one breaker: which state it is in, and the half-open probes.
//!
//! One atomic word holds the state, a generation number and, in half-open, the probes in flight
//! and the probe successes, so every admission and every transition is one compare-and-swap and
//! every decision sees a consistent state:
//!
//! ```text
//! bit 0..3   state (closed, open, half-open, disabled, forced-open, metrics-only)
//! bit 3..15  half-open probes in flight
//! bit 15..27 half-open probe successes
//! bit 32..64 generation: +1 on every transition
//! ```
//!
//! A second word holds the deadline of the current generation (when an open breaker may probe,
//! when a half-open breaker gives up) tagged with the generation's low 24 bits. The winner of a
//! transition publishes it right after its compare-and-swap; a reader that sees a deadline of
//! another generation treats the deadline as not yet known (an open breaker rejects).
//!
//! Every admission returns the generation it was admitted in, and a result is only applied to
//! the generation it belongs to: a probe that answers after its half-open period ended, or a
//! call admitted before the breaker opened, cannot move the new state.
//!
//! The machine does not read the clock: callers pass `now` in milliseconds since an epoch of
//! their choosing, so the machine is deterministic under test and under the `loom` model checker
//! (`src/loom_tests.rs`: never more than the permitted probes in flight, never stuck half-open).

use palisade_core::sync::{AtomicU64, Ordering};

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are recorded and may open the breaker.
    Closed,
    /// Calls are rejected until the open wait ends.
    Open,
    /// A limited number of probe calls test whether the dependency recovered.
    HalfOpen,
    /// The breaker is switched off: every call flows and nothing is recorded.
    Disabled,
    /// Forced open by an operator: every call is rejected until the state is changed by hand.
    ForcedOpen,
    /// Observe-only: every call flows, outcomes are recorded and rates computed, but the breaker
    /// never opens (it logs when it would have).
    MetricsOnly,
}

impl State {
    const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ];

    /// A short, stable name for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Disabled => "disabled",
            Self::ForcedOpen => "forced_open",
            Self::MetricsOnly => "metrics_only",
        }
    }

    /// The value of the `palisade_circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open,
    /// 3 disabled, 4 forced open, 5 metrics only.
    pub const fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::Disabled => 3,
            Self::ForcedOpen => 4,
            Self::MetricsOnly => 5,
        }
    }

    fn from_code(code: u64) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| u64::from(s.code()) == code)
            .unwrap_or(Self::Closed)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The failure rate of the window reached the threshold.
    FailureRate,
    /// The slow-call rate of the window reached the threshold.
    SlowCallRate,
    /// The configured number of consecutive failures was reached.
    ConsecutiveFailures,
    /// The open wait ended (open → half-open).
    WaitElapsed,
    /// A probe failed (half-open → open).
    ProbeFailed,
    /// Enough probes succeeded (half-open → closed).
    ProbesSucceeded,
    /// The half-open state lasted longer than its maximum (half-open → open).
    HalfOpenTimeout,
    /// An operator changed the state through a handle.
    Manual,
}

impl Cause {
    /// A short, stable name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::WaitElapsed => "wait_elapsed",
            Self::ProbeFailed => "probe_failed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::HalfOpenTimeout => "half_open_timeout",
            Self::Manual => "manual",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of state, reported once, by the caller whose compare-and-swap made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// The generation entered.
    pub generation: u32,
    /// Why.
    pub cause: Cause,
    /// The deadline of the new state (ms): when an open breaker may probe, or when a half-open
    /// breaker gives up. `None` for states without one.
    pub deadline: Option<u64>,
}

/// What an admission decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed: the call flows and its outcome is recorded in the window of `generation`.
    Closed {
        /// The generation admitted in.
        generation: u32,
    },
    /// Half-open: the call is one of the permitted probes of `generation` and must report its
    /// result with [`Machine::on_probe`] (or [`ProbeResult::Ignored`] when it is abandoned).
    Probe {
        /// The generation admitted in.
        generation: u32,
    },
    /// Metrics only: the call flows and its outcome is recorded, but never opens the breaker.
    Observe {
        /// The generation admitted in.
        generation: u32,
    },
    /// Disabled: the call flows and nothing is recorded.
    Bypass,
    /// Rejected. `retry_in` is the time (ms) until the state may change: the remaining open time,
    /// 0 when half-open with every probe slot taken, `None` when unknown (forced open, or a
    /// deadline being published this instant).
    Rejected {
        /// Milliseconds until a retry may be admitted, when known.
        retry_in: Option<u64>,
    },
}

/// An admission and the transition it caused, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The decision.
    pub admission: Admission,
    /// The transition this admission made (open → half-open on the first probe, half-open → open
    /// when the half-open period timed out).
    pub transition: Option<Transition>,
}

/// The result of a half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeResult {
    /// The probe succeeded.
    Success,
    /// The probe failed (a slow probe counts as failed when slow calls are detected).
    Failure,
    /// The probe's outcome does not count (ignored by the classifier, or the call was abandoned):
    /// its slot is released for another probe.
    Ignored,
}

/// A consistent view of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MachineSnapshot {
    /// The state.
    pub state: State,
    /// The generation.
    pub generation: u32,
    /// Half-open probes in flight.
    pub probes_in_flight: u32,
    /// Half-open probes that succeeded so far.
    pub probe_successes: u32,
    /// The deadline of this generation (ms), when it has one and it is published.
    pub deadline: Option<u64>,
}

const KIND_MASK: u64 = 0b111;
const PROBE_SHIFT: u32 = 3;
const SUCCESS_SHIFT: u32 = 15;
const FIELD_MASK: u64 = (1 << 12) - 1;
const GEN_SHIFT: u32 = 32;
const PROBE_ONE: u64 = 1 << PROBE_SHIFT;
const SUCCESS_ONE: u64 = 1 << SUCCESS_SHIFT;

/// The most probes or successes the word can count.
pub(crate) const MAX_PROBES: u32 = (1 << 12) - 1;

const DEADLINE_MASK: u64 = (1 << 40) - 1;
const AUX_GEN_SHIFT: u32 = 40;
const AUX_GEN_MASK: u64 = (1 << 24) - 1;

fn kind(word: u64) -> State {
    State::from_code(word & KIND_MASK)
}

fn generation(word: u64) -> u32 {
    // The top 32 bits, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let g = (word >> GEN_SHIFT) as u32;
    g
}

fn probes(word: u64) -> u32 {
    // Masked to 12 bits.
    #[allow(clippy::cast_possible_truncation)]
    let p = ((word >> PROBE_SHIFT) & FIELD_MASK) as u32;
    p
}

fn successes(word: u64) -> u32 {
    // Masked to 12 bits.
    #[allow(clippy::cast_possible_truncation)]
    let s = ((word >> SUCCESS_SHIFT) & FIELD_MASK) as u32;
    s
}

fn pack(state: State, generation: u32, probes: u32, successes: u32) -> u64 {
    u64::from(state.code())
        | (u64::from(probes) & FIELD_MASK) << PROBE_SHIFT
        | (u64::from(successes) & FIELD_MASK) << SUCCESS_SHIFT
        | u64::from(generation) << GEN_SHIFT
}

fn aux(generation: u32, deadline: u64) -> u64 {
    (u64::from(generation) & AUX_GEN_MASK) << AUX_GEN_SHIFT | deadline.min(DEADLINE_MASK)
}

/// The lock-free state machine; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Machine {
    word: AtomicU64,
    deadline: AtomicU64,
    permitted: u32,
    success_threshold: u32,
    /// The longest half-open period (ms); `None` for no limit.
    half_open_max: Option<u64>,
}

impl Machine {
    /// A machine in `initial` state (generation 0) that admits `permitted` concurrent probes when
    /// half-open, closes after `success_threshold` probe successes and reopens after
    /// `half_open_max` ms in half-open. Counts are clamped to `1..=`[`MAX_PROBES`].
    ///
    /// An initial [`State::Open`] or [`State::HalfOpen`] has no deadline: it is published by the
    /// next transition. Use [`Machine::force`] to enter them with one.
    pub(crate) fn new(
        initial: State,
        permitted: u32,
        success_threshold: u32,
        half_open_max: Option<u64>,
    ) -> Self {
        Self {
            word: AtomicU64::new(pack(initial, 0, 0, 0)),
            deadline: AtomicU64::new(aux(u32::MAX, 0)),
            permitted: permitted.clamp(1, MAX_PROBES),
            success_threshold: success_threshold.clamp(1, MAX_PROBES),
            half_open_max,
        }
    }

    /// The number of concurrent probes admitted when half-open.
    pub(crate) fn permitted_probes(&self) -> u32 {
        self.permitted
    }

    /// The state right now (one atomic load).
    #[inline]
    pub(crate) fn state(&self) -> State {
        kind(self.word.load(Ordering::Acquire))
    }

    /// A consistent snapshot.
    pub(crate) fn snapshot(&self) -> MachineSnapshot {
        let word = self.word.load(Ordering::Acquire);
        MachineSnapshot {
            state: kind(word),
            generation: generation(word),
            probes_in_flight: probes(word),
            probe_successes: successes(word),
            deadline: self.deadline_of(word),
        }
    }

    /// Whether `generation` is the current generation and the state is `state`.
    #[inline]
    pub(crate) fn is_current(&self, state: State, generation_: u32) -> bool {
        let word = self.word.load(Ordering::Acquire);
        kind(word) == state && generation(word) == generation_
    }

    /// The published deadline of the generation in `word`, if any.
    fn deadline_of(&self, word: u64) -> Option<u64> {
        let published = self.deadline.load(Ordering::Acquire);
        let same = (published >> AUX_GEN_SHIFT) == u64::from(generation(word)) & AUX_GEN_MASK;
        (same && matches!(kind(word), State::Open | State::HalfOpen))
            .then_some(published & DEADLINE_MASK)
            .filter(|&d| d != DEADLINE_MASK)
    }

    fn publish(&self, generation_: u32, deadline: Option<u64>) {
        // `DEADLINE_MASK` stands for "no deadline" (a half-open period without a limit).
        self.deadline.store(
            aux(generation_, deadline.unwrap_or(DEADLINE_MASK)),
            Ordering::Release,
        );
    }

    fn cas(&self, current: u64, next: u64) -> Result<u64, u64> {
        self.word
            .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Decides whether a call may proceed. `now` gives the time (ms); it is not called in the
    /// closed state, whose admission is one atomic load. `open_wait` gives the open wait (ms) to
    /// use if this admission ends a timed-out half-open period; it is called only then.
    #[inline]
    pub(crate) fn admit(
        &self,
        now: impl FnOnce() -> u64,
        open_wait: impl FnMut() -> u64,
    ) -> Admitted {
        let word = self.word.load(Ordering::Acquire);
        // The closed fast path: one load, no write.
        if word & KIND_MASK == u64::from(State::Closed.code()) {
            return Admitted {
                admission: Admission::Closed {
                    generation: generation(word),
                },
                transition: None,
            };
        }
        self.admit_slow(word, now(), open_wait)
    }

    #[cold]
    fn admit_slow(&self, mut word: u64, now: u64, mut open_wait: impl FnMut() -> u64) -> Admitted {
        let admitted = |admission| Admitted {
            admission,
            transition: None,
        };
        loop {
            let gen_ = generation(word);
            match kind(word) {
                State::Closed => return admitted(Admission::Closed { generation: gen_ }),
                State::MetricsOnly => return admitted(Admission::Observe { generation: gen_ }),
                State::Disabled => return admitted(Admission::Bypass),
                State::ForcedOpen => return admitted(Admission::Rejected { retry_in: None }),
                State::Open => {
                    let Some(deadline) = self.deadline_of(word) else {
                        // The deadline of this generation is being published (or the machine
                        // started open without one): reject, unless the state moved on.
                        let again = self.word.load(Ordering::Acquire);
                        if again != word {
                            word = again;
                            continue;
                        }
                        return admitted(Admission::Rejected { retry_in: None });
                    };
                    if now < deadline {
                        return admitted(Admission::Rejected {
                            retry_in: Some(deadline - now),
                        });
                    }
                    // The wait is over: this caller becomes the first probe of a half-open period.
                    let next_gen = gen_.wrapping_add(1);
                    match self.cas(word, pack(State::HalfOpen, next_gen, 1, 0)) {
                        Ok(_) => {
                            let deadline = self.half_open_max.map(|max| now.saturating_add(max));
                            self.publish(next_gen, deadline);
                            return Admitted {
                                admission: Admission::Probe {
                                    generation: next_gen,
                                },
                                transition: Some(Transition {
                                    from: State::Open,
                                    to: State::HalfOpen,
                                    generation: next_gen,
                                    cause: Cause::WaitElapsed,
                                    deadline,
                                }),
                            };
                        }
                        Err(actual) => word = actual,
                    }
                }
                State::HalfOpen => {
                    if self.deadline_of(word).is_some_and(|d| now >= d) {
                        // The half-open period timed out (probes hung or never came): reopen.
                        let wait = open_wait();
                        match self.reopen(word, now, wait, Cause::HalfOpenTimeout) {
                            Ok(transition) => {
                                return Admitted {
                                    admission: Admission::Rejected {
                                        retry_in: Some(wait),
                                    },
                                    transition: Some(transition),
                                };
                            }
                            Err(actual) => {
                                word = actual;
                                continue;
                            }
                        }
                    }
                    if probes(word) >= self.permitted {
                        return admitted(Admission::Rejected { retry_in: Some(0) });
                    }
                    match self.cas(word, word + PROBE_ONE) {
                        Ok(_) => return admitted(Admission::Probe { generation: gen_ }),
                        Err(actual) => word = actual,
                    }
                }
            }
        }
    }

    fn reopen(&self, word: u64, now: u64, wait: u64, cause: Cause) -> Result<Transition, u64> {
        let next_gen = generation(word).wrapping_add(1);
        self.cas(word, pack(State::Open, next_gen, 0, 0))?;
        let deadline = now.saturating_add(wait);
        self.publish(next_gen, Some(deadline));
        Ok(Transition {
            from: kind(word),
            to: State::Open,
            generation: next_gen,
            cause,
            deadline: Some(deadline),
        })
    }

    /// Applies the result of a probe admitted in `generation_`. Returns the transition it caused:
    /// half-open → closed on the last needed success, half-open → open (after `open_wait` ms) on
    /// a failure. Results of another generation are ignored.
    pub(crate) fn on_probe(
        &self,
        generation_: u32,
        result: ProbeResult,
        now: u64,
        mut open_wait: impl FnMut() -> u64,
    ) -> Option<Transition> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if kind(word) != State::HalfOpen || generation(word) != generation_ {
                return None;
            }
            debug_assert!(probes(word) > 0, "a probe result without a probe in flight");
            let next_gen = generation_.wrapping_add(1);
            let attempt = match result {
                ProbeResult::Failure => {
                    match self.reopen(word, now, open_wait(), Cause::ProbeFailed) {
                        Ok(transition) => return Some(transition),
                        Err(actual) => Err(actual),
                    }
                }
                ProbeResult::Success if successes(word) + 1 >= self.success_threshold => {
                    match self.cas(word, pack(State::Closed, next_gen, 0, 0)) {
                        Ok(_) => {
                            return Some(Transition {
                                from: State::HalfOpen,
                                to: State::Closed,
                                generation: next_gen,
                                cause: Cause::ProbesSucceeded,
                                deadline: None,
                            });
                        }
                        Err(actual) => Err(actual),
                    }
                }
                ProbeResult::Success => self.cas(word, word - PROBE_ONE + SUCCESS_ONE),
                ProbeResult::Ignored => self.cas(word, word - PROBE_ONE),
            };
            match attempt {
                Ok(_) => return None,
                Err(actual) => word = actual,
            }
        }
    }

    /// Opens a closed breaker of `generation_` (its window crossed a threshold). Returns the
    /// transition, or `None` when the breaker already left that generation (someone else opened
    /// it, or it was changed by hand).
    pub(crate) fn trip(
        &self,
        generation_: u32,
        now: u64,
        open_wait: u64,
        cause: Cause,
    ) -> Option<Transition> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if kind(word) != State::Closed || generation(word) != generation_ {
                return None;
            }
            match self.reopen(word, now, open_wait, cause) {
                Ok(transition) => return Some(transition),
                Err(actual) => word = actual,
            }
        }
    }

    /// Ends the current period if its deadline passed, for a timer: open → half-open (with no probe
    /// in flight), or a timed-out half-open → open (after `open_wait` ms). Does nothing when the
    /// machine left `generation_`.
    pub(crate) fn expire(
        &self,
        generation_: u32,
        now: u64,
        mut open_wait: impl FnMut() -> u64,
    ) -> Option<Transition> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if generation(word) != generation_ {
                return None;
            }
            let deadline = self.deadline_of(word)?;
            if now < deadline {
                return None;
            }
            let attempt = match kind(word) {
                State::Open => {
                    let next_gen = generation_.wrapping_add(1);
                    match self.cas(word, pack(State::HalfOpen, next_gen, 0, 0)) {
                        Ok(_) => {
                            let deadline = self.half_open_max.map(|max| now.saturating_add(max));
                            self.publish(next_gen, deadline);
                            return Some(Transition {
                                from: State::Open,
                                to: State::HalfOpen,
                                generation: next_gen,
                                cause: Cause::WaitElapsed,
                                deadline,
                            });
                        }
                        Err(actual) => Err(actual),
                    }
                }
                State::HalfOpen => self
                    .reopen(word, now, open_wait(), Cause::HalfOpenTimeout)
                    .map(Some),
                _ => return None,
            };
            match attempt {
                Ok(transition) => return transition,
                Err(actual) => word = actual,
            }
        }
    }

    /// Moves to `to` whatever the current state, as an operator does. Entering [`State::Open`]
    /// uses `open_wait` ms; entering [`State::HalfOpen`] starts a fresh half-open period. Returns
    /// `None` when the machine is already in `to` (and `to` is not [`State::Closed`], which is
    /// always re-entered so that a reset starts a fresh generation).
    pub(crate) fn force(&self, to: State, now: u64, open_wait: u64) -> Option<Transition> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let from = kind(word);
            if from == to && to != State::Closed {
                return None;
            }
            let next_gen = generation(word).wrapping_add(1);
            if let Err(actual) = self.cas(word, pack(to, next_gen, 0, 0)) {
                word = actual;
                continue;
            }
            let deadline = match to {
                State::Open => Some(now.saturating_add(open_wait)),
                State::HalfOpen => self.half_open_max.map(|max| now.saturating_add(max)),
                _ => None,
            };
            self.publish(next_gen, deadline);
            return Some(Transition {
                from,
                to,
                generation: next_gen,
                cause: Cause::Manual,
                deadline,
            });
        }
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    const WAIT: u64 = 30_000;

    fn machine(permitted: u32, successes: u32) -> Machine {
        Machine::new(State::Closed, permitted, successes, Some(60_000))
    }

    fn open(m: &Machine, now: u64) -> u32 {
        let g = m.snapshot().generation;
        m.trip(g, now, WAIT, Cause::FailureRate).unwrap().generation
    }

    fn probe(m: &Machine, now: u64) -> Admitted {
        m.admit(|| now, || WAIT)
    }

    #[test]
    fn closed_admits_without_writing() {
        let m = machine(1, 1);
        let before = m.snapshot();
        for _ in 0..3 {
            assert_eq!(probe(&m, 0).admission, Admission::Closed { generation: 0 });
        }
        assert_eq!(m.snapshot(), before);
    }

    #[test]
    fn trip_opens_once_and_rejects_with_the_remaining_time() {
        let m = machine(2, 2);
        let t = m.trip(0, 1_000, WAIT, Cause::ConsecutiveFailures).unwrap();
        assert_eq!(
            (t.from, t.to, t.generation),
            (State::Closed, State::Open, 1)
        );
        assert_eq!(t.deadline, Some(31_000));
        assert_eq!(m.trip(0, 1_000, WAIT, Cause::FailureRate), None, "stale");
        assert_eq!(
            probe(&m, 11_000).admission,
            Admission::Rejected {
                retry_in: Some(20_000)
            }
        );
    }

    #[test]
    fn half_open_admits_exactly_the_permitted_probes() {
        let m = machine(2, 3);
        open(&m, 0);
        let first = probe(&m, WAIT);
        assert_eq!(first.admission, Admission::Probe { generation: 2 });
        let t = first.transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.cause),
            (State::Open, State::HalfOpen, Cause::WaitElapsed)
        );
        assert_eq!(
            probe(&m, WAIT).admission,
            Admission::Probe { generation: 2 }
        );
        assert_eq!(
            probe(&m, WAIT).admission,
            Admission::Rejected { retry_in: Some(0) }
        );
        // A success frees its slot: another probe may go.
        assert_eq!(m.on_probe(2, ProbeResult::Success, WAIT, || WAIT), None);
        assert_eq!(
            probe(&m, WAIT).admission,
            Admission::Probe { generation: 2 }
        );
        // An ignored probe frees its slot without counting.
        assert_eq!(m.on_probe(2, ProbeResult::Ignored, WAIT, || WAIT), None);
        let s = m.snapshot();
        assert_eq!((s.probes_in_flight, s.probe_successes), (1, 1));
        assert_eq!(m.on_probe(2, ProbeResult::Success, WAIT, || WAIT), None);
        assert_eq!(
            probe(&m, WAIT).admission,
            Admission::Probe { generation: 2 }
        );
        let closed = m.on_probe(2, ProbeResult::Success, WAIT, || WAIT).unwrap();
        assert_eq!(
            (closed.from, closed.to, closed.cause),
            (State::HalfOpen, State::Closed, Cause::ProbesSucceeded)
        );
        assert_eq!(m.state(), State::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_and_stale_results_are_ignored() {
        let m = machine(2, 2);
        open(&m, 0);
        probe(&m, WAIT);
        probe(&m, WAIT);
        let t = m
            .on_probe(2, ProbeResult::Failure, WAIT + 5, || 60_000)
            .unwrap();
        assert_eq!(
            (t.to, t.cause, t.deadline),
            (State::Open, Cause::ProbeFailed, Some(WAIT + 5 + 60_000))
        );
        // The other probe answers late: no effect.
        assert_eq!(m.on_probe(2, ProbeResult::Success, WAIT + 6, || 1), None);
        assert_eq!(m.state(), State::Open);
    }

    #[test]
    fn half_open_times_out_into_open() {
        let m = Machine::new(State::Closed, 1, 1, Some(1_000));
        open(&m, 0);
        probe(&m, WAIT); // the probe hangs
        assert_eq!(
            probe(&m, WAIT + 999).admission,
            Admission::Rejected { retry_in: Some(0) }
        );
        let timed_out = probe(&m, WAIT + 1_000);
        assert_eq!(
            timed_out.admission,
            Admission::Rejected {
                retry_in: Some(WAIT)
            }
        );
        let t = timed_out.transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.cause),
            (State::HalfOpen, State::Open, Cause::HalfOpenTimeout)
        );
        // The hung probe finally answers: stale.
        assert_eq!(
            m.on_probe(2, ProbeResult::Success, WAIT + 2_000, || 1),
            None
        );
    }

    #[test]
    fn timers_expire_open_and_half_open() {
        let m = Machine::new(State::Closed, 1, 1, Some(1_000));
        let g = open(&m, 0);
        assert_eq!(m.expire(g, WAIT - 1, || WAIT), None, "too early");
        let half = m.expire(g, WAIT, || WAIT).unwrap();
        assert_eq!(
            (half.to, half.deadline),
            (State::HalfOpen, Some(WAIT + 1_000))
        );
        assert_eq!(m.snapshot().probes_in_flight, 0);
        assert_eq!(m.expire(g, WAIT, || WAIT), None, "stale generation");
        let reopened = m.expire(half.generation, WAIT + 1_000, || 5).unwrap();
        assert_eq!(
            (reopened.to, reopened.deadline),
            (State::Open, Some(WAIT + 1_005))
        );
    }

    #[test]
    fn forced_states() {
        let m = machine(1, 1);
        let t = m.force(State::ForcedOpen, 0, WAIT).unwrap();
        assert_eq!(
            (t.from, t.to, t.cause),
            (State::Closed, State::ForcedOpen, Cause::Manual)
        );
        assert_eq!(m.force(State::ForcedOpen, 0, WAIT), None);
        assert_eq!(
            probe(&m, u64::MAX / 2).admission,
            Admission::Rejected { retry_in: None }
        );
        m.force(State::Disabled, 0, WAIT).unwrap();
        assert_eq!(probe(&m, 0).admission, Admission::Bypass);
        m.force(State::MetricsOnly, 0, WAIT).unwrap();
        assert!(matches!(probe(&m, 0).admission, Admission::Observe { .. }));
        // Closed is always re-entered: a reset is a new generation.
        let a = m.force(State::Closed, 0, WAIT).unwrap().generation;
        let b = m.force(State::Closed, 0, WAIT).unwrap().generation;
        assert_eq!(b, a + 1);
        let open = m.force(State::Open, 10, WAIT).unwrap();
        assert_eq!(open.deadline, Some(10 + WAIT));
        assert_eq!(
            probe(&m, 10).admission,
            Admission::Rejected {
                retry_in: Some(WAIT)
            }
        );
    }

    #[test]
    fn an_initial_open_state_without_a_deadline_rejects() {
        let m = Machine::new(State::Open, 1, 1, None);
        assert_eq!(
            probe(&m, 0).admission,
            Admission::Rejected { retry_in: None }
        );
        assert_eq!(m.snapshot().deadline, None);
    }
}
