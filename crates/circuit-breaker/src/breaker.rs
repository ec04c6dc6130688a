//! [`Breaker`]: the runtime around the [`Machine`] and a window: clock, thresholds,
//! backoff, metrics, logs, callbacks and timers. Also the guard API ([`Breaker::call`]),
//! permits, the operator handle and the builder.

use std::{
    borrow::Cow,
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use palisade_core::{BodyEnd, ConfigError, OnBodyEnd};
use tokio::time::Instant;

use crate::{
    classify::{Classify, Outcome, ResultClassifier},
    config::{CircuitBreakerConfig, Settings, SlidingWindow, WindowSpec},
    error::{BreakerError, Rejected},
    machine::{Admission, Cause, Machine, ProbeResult, State, Transition},
    metrics::Metrics,
    sync::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Padded},
    window::{CountWindow, Sample, TimeWindow, Totals, Window},
};

/// A state change, as passed to [`CircuitBreakerBuilder::on_state_change`] callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange<'a> {
    /// The breaker's name.
    pub breaker: &'a str,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub cause: Cause,
    /// How long the breaker stays open (entering [`State::Open`]), or the longest half-open
    /// period (entering [`State::HalfOpen`]).
    pub until_next: Option<Duration>,
}

type Callback = dyn Fn(&StateChange<'_>) + Send + Sync;

/// Callbacks shared by every breaker built from one builder (a registry's breakers included).
#[derive(Clone, Default)]
pub(crate) struct Hooks(Arc<[Arc<Callback>]>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} state-change callbacks", self.0.len())
    }
}

/// What an admitted call carries until it reports its outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    kind: TicketKind,
    /// When the call started, when slow calls are detected.
    start: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TicketKind {
    Closed(u32),
    Probe(u32),
    Observe(u32),
    Bypass,
}

/// Why a call was refused, before it becomes a [`Rejected`] or a 503.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    pub(crate) state: State,
    pub(crate) retry_in: Duration,
}

pub(crate) struct Inner {
    machine: Machine,
    window: Window,
    consecutive: Padded<AtomicU32>,
    /// Hot copies of settings, read on every call without following the `settings` pointer.
    slow_call_duration: Option<Duration>,
    consecutive_limit: u32,
    /// Whether finishing a closed call reads the clock (time window or slow-call detection).
    clocked: bool,
    settings: Arc<Settings>,
    hooks: Hooks,
    name: Arc<str>,
    epoch: Instant,
    /// Failed recoveries since the breaker last closed: the backoff exponent.
    failed_recoveries: AtomicU32,
    rejected: AtomicU64,
    /// Metrics only: when the breaker last "would have opened" (ms + 1; 0 never).
    would_open_at: AtomicU64,
    metrics: Metrics,
    /// Registry bookkeeping: used since the last sweep, last seen (registry ms), evicted.
    pub(crate) touched: AtomicBool,
    pub(crate) last_seen: AtomicU64,
    pub(crate) evicted: AtomicBool,
    weak: Weak<Inner>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    #[inline]
    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    #[inline]
    fn ms_at(&self, at: Instant) -> u64 {
        millis(at.saturating_duration_since(self.epoch))
    }

    fn jitter_unit(&self) -> f64 {
        if self.settings.open_wait_jitter > 0.0 {
            fastrand::f64()
        } else {
            0.5
        }
    }

    /// The wait of an opening from closed.
    fn first_wait_ms(&self) -> u64 {
        self.settings
            .open_wait_ms(self.failed_recoveries.load(Relaxed), self.jitter_unit())
    }

    /// The wait of a reopening from half-open: one more failed recovery.
    fn reopen_wait_ms(&self) -> u64 {
        let n = self.failed_recoveries.load(Relaxed).saturating_add(1);
        self.settings.open_wait_ms(n, self.jitter_unit())
    }

    /// Admits or refuses a call. In the closed state: one atomic load, plus a clock read only when
    /// slow calls are detected.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Ticket, Refusal> {
        let admitted = self
            .machine
            .admit(|| self.now_ms(), || self.reopen_wait_ms());
        if let Some(transition) = admitted.transition {
            self.transitioned(transition);
        }
        let kind = match admitted.admission {
            Admission::Closed { generation } => TicketKind::Closed(generation),
            Admission::Probe { generation } => TicketKind::Probe(generation),
            Admission::Observe { generation } => TicketKind::Observe(generation),
            Admission::Bypass => {
                return Ok(Ticket {
                    kind: TicketKind::Bypass,
                    start: None,
                });
            }
            Admission::Rejected { retry_in } => return Err(self.refuse(retry_in)),
        };
        let start = self.slow_call_duration.map(|_| Instant::now());
        Ok(Ticket { kind, start })
    }

    #[cold]
    fn refuse(&self, retry_in: Option<u64>) -> Refusal {
        self.rejected.fetch_add(1, Relaxed);
        self.metrics.rejected.increment(1);
        let state = self.machine.state();
        let retry_in = retry_in.map_or(
            // Forced open, or a deadline published this instant: the configured wait.
            self.settings.wait_in_open,
            Duration::from_millis,
        );
        Refusal {
            state: if state == State::Closed {
                State::Open
            } else {
                state
            },
            retry_in,
        }
    }

    pub(crate) fn rejected(&self, refusal: Refusal) -> Rejected {
        Rejected {
            breaker: Arc::clone(&self.name),
            state: refusal.state,
            retry_in: refusal.retry_in,
        }
    }

    /// Reports the outcome of an admitted call.
    #[inline]
    pub(crate) fn finish(&self, ticket: Ticket, outcome: Outcome) {
        if let (TicketKind::Closed(_), Outcome::Success) = (ticket.kind, outcome)
            && !self.clocked
            && self.window.is_all_successes()
            && self.consecutive.load(Relaxed) == 0
        {
            // The healthy steady state: a success joins a window of successes, which it leaves
            // as it is. One counter increment, no write to shared state.
            self.metrics.success.increment(1);
            return;
        }
        self.finish_recorded(ticket, outcome);
    }

    // Kept out of line so that `finish`, the healthy path, stays small enough to inline.
    #[inline(never)]
    fn finish_recorded(&self, ticket: Ticket, outcome: Outcome) {
        if ticket.kind == TicketKind::Bypass {
            return;
        }
        let needs_clock = self.clocked || matches!(ticket.kind, TicketKind::Probe(_));
        let now = needs_clock.then(Instant::now);
        let slow = match (self.slow_call_duration, ticket.start, now) {
            (Some(threshold), Some(start), Some(now)) => {
                now.saturating_duration_since(start) >= threshold
            }
            _ => false,
        };
        match outcome {
            Outcome::Success if slow => self.metrics.slow.increment(1),
            Outcome::Success => self.metrics.success.increment(1),
            Outcome::Failure => self.metrics.failure.increment(1),
            Outcome::Ignore => self.metrics.ignored.increment(1),
        }
        let now_ms = now.map_or(0, |now| self.ms_at(now));
        match ticket.kind {
            TicketKind::Closed(generation) if outcome != Outcome::Ignore => {
                self.record(State::Closed, generation, outcome, slow, now_ms);
            }
            TicketKind::Observe(generation) if outcome != Outcome::Ignore => {
                self.record(State::MetricsOnly, generation, outcome, slow, now_ms);
            }
            TicketKind::Probe(generation) => {
                let result = match outcome {
                    Outcome::Ignore => ProbeResult::Ignored,
                    Outcome::Failure => ProbeResult::Failure,
                    // A slow probe says the dependency has not recovered.
                    Outcome::Success if slow => ProbeResult::Failure,
                    Outcome::Success => ProbeResult::Success,
                };
                self.probe_finished(generation, result, now_ms);
            }
            _ => {}
        }
    }

    #[cold]
    fn probe_finished(&self, generation: u32, result: ProbeResult, now_ms: u64) {
        if let Some(transition) = self
            .machine
            .on_probe(generation, result, now_ms, || self.reopen_wait_ms())
        {
            self.transitioned(transition);
        }
    }

    /// Records a closed (or metrics-only) call in the window and opens the breaker if a threshold
    /// is crossed. No lock, no allocation; a healthy call with a count window writes nothing but
    /// the window's cursor.
    #[inline]
    fn record(&self, state: State, generation: u32, outcome: Outcome, slow: bool, now_ms: u64) {
        if !self.machine.is_current(state, generation) {
            // Admitted before the breaker changed state: says nothing about the new state.
            return;
        }
        let failure = outcome == Outcome::Failure;
        let mut cause = None;
        let limit = self.consecutive_limit;
        if limit > 0 {
            if failure {
                if self.consecutive.fetch_add(1, Relaxed).saturating_add(1) >= limit {
                    cause = Some(Cause::ConsecutiveFailures);
                }
            } else if self.consecutive.load(Relaxed) != 0 {
                self.consecutive.store(0, Relaxed);
            }
        }
        if let Some(totals) = self.window.record(Sample { failure, slow }, now_ms)
            && cause.is_none()
        {
            cause = self.evaluate(totals);
        }
        if let Some(cause) = cause {
            self.threshold_crossed(state, generation, cause);
        }
    }

    fn evaluate(&self, totals: Totals) -> Option<Cause> {
        let s = &self.settings;
        if totals.calls < s.minimum_calls {
            return None;
        }
        let calls = f64::from(totals.calls);
        if f64::from(totals.failures) >= s.failure_rate_threshold * calls {
            return Some(Cause::FailureRate);
        }
        if s.slow_call_duration.is_some()
            && f64::from(totals.slow) >= s.slow_call_rate_threshold * calls
        {
            return Some(Cause::SlowCallRate);
        }
        None
    }

    #[cold]
    fn threshold_crossed(&self, state: State, generation: u32, cause: Cause) {
        let now = self.now_ms();
        if state == State::MetricsOnly {
            // Observe only: say so, at most once per open wait, as a real breaker would open.
            let last = self.would_open_at.load(Relaxed);
            let due =
                last == 0 || now.saturating_sub(last - 1) >= millis(self.settings.wait_in_open);
            if due
                && self
                    .would_open_at
                    .compare_exchange(last, now + 1, Relaxed, Relaxed)
                    .is_ok()
            {
                let totals = self.window.totals(now);
                tracing::warn!(
                    breaker = &*self.name,
                    cause = cause.as_str(),
                    calls = totals.calls,
                    failures = totals.failures,
                    slow_calls = totals.slow,
                    "circuit breaker would open (metrics only: calls are not rejected)"
                );
            }
            return;
        }
        if let Some(transition) = self
            .machine
            .trip(generation, now, self.first_wait_ms(), cause)
        {
            self.transitioned(transition);
        }
    }

    /// Everything a transition entails, done once by the caller that made it.
    #[cold]
    fn transitioned(&self, t: Transition) {
        match t.to {
            State::Closed | State::MetricsOnly => {
                self.window.clear();
                self.consecutive.store(0, Relaxed);
                if t.cause == Cause::ProbesSucceeded {
                    self.failed_recoveries.store(0, Relaxed);
                }
            }
            State::Open if t.from == State::HalfOpen => {
                self.failed_recoveries.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        if t.from == t.to {
            // A reset of a closed breaker: a fresh generation and window, but no state change to
            // count, log or announce.
            return;
        }
        self.metrics.transition(t.from, t.to);
        let until_next = t
            .deadline
            .map(|deadline| Duration::from_millis(deadline.saturating_sub(self.now_ms())));
        let (name, from, to, cause) = (
            &*self.name,
            t.from.as_str(),
            t.to.as_str(),
            t.cause.as_str(),
        );
        let ms = until_next.map(millis);
        match t.to {
            _ if !self.settings.log_state_changes => {}
            State::Open => tracing::warn!(
                breaker = name,
                from,
                to,
                cause,
                open_for_ms = ms,
                failed_recoveries = self.failed_recoveries.load(Relaxed),
                "circuit breaker opened: calls are rejected until the wait ends"
            ),
            State::ForcedOpen => tracing::warn!(
                breaker = name,
                from,
                to,
                cause,
                "circuit breaker forced open: calls are rejected until an operator changes it"
            ),
            State::HalfOpen => tracing::info!(
                breaker = name,
                from,
                to,
                cause,
                max_half_open_ms = ms,
                probes = self.machine.permitted_probes(),
                "circuit breaker half-open: probing the dependency"
            ),
            State::Closed => {
                tracing::info!(breaker = name, from, to, cause, "circuit breaker closed");
            }
            State::Disabled | State::MetricsOnly => {
                tracing::info!(
                    breaker = name,
                    from,
                    to,
                    cause,
                    "circuit breaker state changed"
                );
            }
        }
        let change = StateChange {
            breaker: name,
            from: t.from,
            to: t.to,
            cause: t.cause,
            until_next,
        };
        for hook in &*self.hooks.0 {
            hook(&change);
        }
        self.arm_timer(&t);
    }

    /// With automatic transitions, ends an open (or half-open) period on time even without calls.
    fn arm_timer(&self, t: &Transition) {
        if !self.settings.automatic_transition {
            return;
        }
        let Some(deadline) = t.deadline else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a synchronous caller): the next call makes the move instead.
            return;
        };
        let at = self.epoch + Duration::from_millis(deadline);
        let (weak, generation) = (self.weak.clone(), t.generation);
        runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(inner) = weak.upgrade() {
                let now = inner.now_ms();
                if let Some(next) = inner
                    .machine
                    .expire(generation, now, || inner.reopen_wait_ms())
                {
                    inner.transitioned(next);
                }
            }
        });
    }

    fn force(&self, to: State) {
        let now = self.now_ms();
        if let Some(t) = self.machine.force(to, now, self.first_wait_ms()) {
            self.transitioned(t);
        }
    }

    pub(crate) fn touch(&self) {
        if !self.touched.load(Relaxed) {
            self.touched.store(true, Relaxed);
        }
    }
}

/// A circuit breaker: the state machine, its window and its settings, shared by every clone.
///
/// Use it directly as a guard around any future ([`Breaker::call`]), wrap it in a
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) for a server route or a client, and keep a
/// clone as the operator handle ([`Breaker::snapshot`], [`Breaker::force_open`],
/// ...). Cloning is a reference count; every clone is the same breaker.
///
/// ```
/// use std::time::Duration;
/// use palisade_circuit_breaker::{BreakerError, Breaker, State};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palisade_core::ConfigError> {
/// let breaker = Breaker::builder()
///     .name("redis")
///     .consecutive_failures(2)
///     .wait_in_open(Duration::from_secs(10))
///     .build()?;
///
/// async fn get(key: &str) -> Result<String, std::io::Error> {
///     Err(std::io::Error::other(format!("connection refused reading {key}")))
/// }
///
/// for _ in 0..2 {
///     let result = breaker.call(get("session:42")).await;
///     assert!(matches!(result, Err(BreakerError::Inner(_))));
/// }
/// assert_eq!(breaker.state(), State::Open);
/// match breaker.call(get("session:42")).await {
///     Err(BreakerError::Rejected(rejected)) => assert_eq!(rejected.retry_after_secs(), 10),
///     other => panic!("expected a rejection, got {other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Breaker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &&*self.inner.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A consistent-enough view of a breaker for status pages and tests (each field is read
/// atomically; fields are not read together).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSnapshot {
    /// The state.
    pub state: State,
    /// Calls in the window.
    pub calls: u32,
    /// Failed calls in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// The window's failure rate, `None` while it has no calls.
    pub failure_rate: Option<f64>,
    /// The window's slow-call rate, `None` while it has no calls.
    pub slow_call_rate: Option<f64>,
    /// Failures in a row right now.
    pub consecutive_failures: u32,
    /// Half-open probes in flight.
    pub probes_in_flight: u32,
    /// Half-open probe successes so far.
    pub probe_successes: u32,
    /// Open: time until probes are let through. Half-open: time until the period times out.
    pub remaining: Option<Duration>,
    /// Failed recoveries since the breaker last closed (the backoff exponent).
    pub failed_recoveries: u32,
    /// Calls rejected since the breaker was created.
    pub rejected: u64,
}

impl Breaker {
    /// A builder starting from the defaults (see [`CircuitBreakerConfig`]).
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }

    /// A breaker with `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see
    /// [`CircuitBreakerConfig::validate`]).
    pub fn from_config(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        let settings = config.settings()?;
        Ok(Self::from_settings(
            Arc::from(config.name.into_owned()),
            Arc::new(settings),
            Hooks::default(),
        ))
    }

    pub(crate) fn from_settings(name: Arc<str>, settings: Arc<Settings>, hooks: Hooks) -> Self {
        let window = match settings.window {
            WindowSpec::Count { size } => Window::Count(CountWindow::new(size)),
            WindowSpec::Time { bucket_ms, buckets } => {
                Window::Time(TimeWindow::new(bucket_ms, buckets))
            }
        };
        let machine = Machine::new(
            settings.initial,
            settings.permitted_calls_in_half_open,
            settings.success_threshold,
            settings.half_open_max_ms(),
        );
        let metrics = Metrics::new(&name);
        metrics.state.set(f64::from(settings.initial.code()));
        let clocked = window.needs_clock() || settings.slow_call_duration.is_some();
        let inner = Arc::new_cyclic(|weak| Inner {
            machine,
            window,
            consecutive: Padded(AtomicU32::new(0)),
            slow_call_duration: settings.slow_call_duration,
            consecutive_limit: settings.consecutive_failures,
            clocked,
            settings,
            hooks,
            name,
            epoch: Instant::now(),
            failed_recoveries: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            would_open_at: AtomicU64::new(0),
            metrics,
            touched: AtomicBool::new(true),
            last_seen: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            weak: weak.clone(),
        });
        Self { inner }
    }

    /// The name (the `breaker` label of its metrics).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state right now.
    pub fn state(&self) -> State {
        self.inner.machine.state()
    }

    /// The state and the window's figures.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = &*self.inner;
        let now = inner.now_ms();
        let machine = inner.machine.snapshot();
        let totals = inner.window.totals(now);
        BreakerSnapshot {
            state: machine.state,
            calls: totals.calls,
            failures: totals.failures,
            slow_calls: totals.slow,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_call_rate(),
            consecutive_failures: inner.consecutive.load(Relaxed),
            probes_in_flight: machine.probes_in_flight,
            probe_successes: machine.probe_successes,
            remaining: machine
                .deadline
                .map(|d| Duration::from_millis(d.saturating_sub(now))),
            failed_recoveries: inner.failed_recoveries.load(Relaxed),
            rejected: inner.rejected.load(Relaxed),
        }
    }

    /// Asks to make a call. The permit reports the outcome ([`Permit::record`]); dropping it
    /// unrecorded counts as [`Outcome::Ignore`] (and frees a half-open probe slot).
    ///
    /// # Errors
    ///
    /// [`Rejected`] when the breaker refuses the call, with the time until it may accept one.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        match self.inner.admit() {
            Ok(ticket) => Ok(Permit {
                inner: &self.inner,
                ticket: Some(ticket),
            }),
            Err(refusal) => Err(self.inner.rejected(refusal)),
        }
    }

    #[inline]
    pub(crate) fn acquire_guard(&self) -> Result<CallGuard, Refusal> {
        self.inner.admit().map(|ticket| CallGuard {
            inner: Arc::clone(&self.inner),
            ticket: Some(ticket),
            outcome: Outcome::Success,
        })
    }

    /// Runs `future` through the breaker: rejected at once while open, otherwise awaited, with
    /// `Ok` counted as a success and `Err` as a failure. The future is not polled when rejected.
    /// Dropping the returned future before it completes counts as ignored.
    ///
    /// # Errors
    ///
    /// [`BreakerError::Rejected`] when the breaker refused the call, [`BreakerError::Inner`] with
    /// the future's own error.
    pub async fn call<F, T, E>(&self, future: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_with(ResultClassifier, future).await
    }

    /// [`Breaker::call`] with a classifier deciding the outcome (for example a "not found"
    /// error that is an answer, not a failure).
    ///
    /// # Errors
    ///
    /// As [`Breaker::call`].
    pub async fn call_with<F, T, E, C>(
        &self,
        classifier: C,
        future: F,
    ) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        let permit = self.try_acquire()?;
        let result = future.await;
        permit.record(classifier.classify(&result));
        result.map_err(BreakerError::Inner)
    }

    /// Opens the breaker until an operator changes it: every call is rejected.
    pub fn force_open(&self) {
        self.inner.force(State::ForcedOpen);
    }

    /// Closes the breaker now with an empty window, keeping the backoff history (a breaker forced
    /// closed that fails again waits longer, as its recoveries kept failing).
    pub fn force_closed(&self) {
        self.inner.force(State::Closed);
    }

    /// Opens the breaker for the (backed-off) open wait, as if its thresholds had been crossed;
    /// it then probes as usual.
    pub fn trip(&self) {
        self.inner.force(State::Open);
    }

    /// Switches the breaker off: every call flows and nothing is recorded.
    pub fn disable(&self) {
        self.inner.force(State::Disabled);
    }

    /// Observe only: every call flows; outcomes are recorded and a warning logged when the breaker
    /// would open.
    pub fn metrics_only(&self) {
        self.inner.force(State::MetricsOnly);
    }

    /// Closes the breaker and forgets its history: empty window, no failures in a row, no backoff.
    pub fn reset(&self) {
        self.inner.failed_recoveries.store(0, Relaxed);
        self.inner.force(State::Closed);
    }

    pub(crate) fn is_evicted(&self) -> bool {
        self.inner.evicted.load(Relaxed)
    }

    pub(crate) fn touch(&self) {
        self.inner.touch();
    }

    pub(crate) fn retry_after_jitter(&self) -> Duration {
        self.inner.settings.retry_after_jitter
    }
}

/// Permission to make one call, from [`Breaker::try_acquire`]. Report the outcome with
/// [`Permit::record`]; a permit dropped unrecorded counts as [`Outcome::Ignore`].
#[must_use = "a permit dropped without an outcome counts as ignored"]
pub struct Permit<'a> {
    inner: &'a Inner,
    ticket: Option<Ticket>,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &&*self.inner.name)
            .field("probe", &self.is_probe())
            .finish()
    }
}

impl Permit<'_> {
    /// Reports the call's outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.finish(ticket, outcome);
        }
    }

    /// Reports a success.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Reports a failure.
    #[inline]
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        matches!(
            self.ticket,
            Some(Ticket {
                kind: TicketKind::Probe(_),
                ..
            })
        )
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.finish(ticket, Outcome::Ignore);
        }
    }
}

/// An admitted call of a layer, reported when the response body ends (as a
/// [`ResponseBody`](palisade_core::ResponseBody) guard) or when the call fails. A body that
/// errors counts as a failure; one dropped early keeps the outcome of its status. Dropped
/// without a response (the request was cancelled), it counts as ignored.
pub struct CallGuard {
    inner: Arc<Inner>,
    ticket: Option<Ticket>,
    outcome: Outcome,
}

impl std::fmt::Debug for CallGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallGuard")
            .field("breaker", &&*self.inner.name)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl CallGuard {
    /// Sets the outcome reported when the guard ends (the response's classification).
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// Reports the outcome set so far, now.
    pub(crate) fn finish_now(mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.finish(ticket, self.outcome);
        }
    }
}

impl OnBodyEnd for CallGuard {
    fn on_body_end(mut self, end: BodyEnd) {
        if end == BodyEnd::Errored {
            self.outcome = Outcome::Failure;
        }
        self.finish_now();
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.inner.finish(ticket, Outcome::Ignore);
        }
    }
}

/// Builds a [`Breaker`] (or, through the layer constructors, the breakers of a scope);
/// every setter documents its default. See [`CircuitBreakerConfig`] for the table.
#[derive(Clone, Default)]
#[must_use]
pub struct CircuitBreakerBuilder {
    config: CircuitBreakerConfig,
    hooks: Vec<Arc<Callback>>,
}

impl std::fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.config)
            .field("callbacks", &self.hooks.len())
            .finish()
    }
}

impl From<CircuitBreakerConfig> for CircuitBreakerBuilder {
    fn from(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            hooks: Vec::new(),
        }
    }
}

impl CircuitBreakerBuilder {
    /// Name for metrics and logs (scoped breakers are `name:key`). Default `default`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The window the rates are computed over. Default the last 100 calls.
    pub fn window(mut self, window: SlidingWindow) -> Self {
        self.config.window = window;
        self
    }

    /// A count-based window of the last `size` calls.
    pub fn count_window(self, size: u32) -> Self {
        self.window(SlidingWindow::count(size))
    }

    /// A time-based window of the last `duration`, in `buckets` buckets.
    pub fn time_window(self, duration: Duration, buckets: u32) -> Self {
        self.window(SlidingWindow::time(duration, buckets))
    }

    /// Calls the window must hold before its rates count. Default 5.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Failure share that opens the breaker, in `(0, 1]`. Default 0.5.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.config.failure_rate_threshold = rate;
        self
    }

    /// Failures in a row that open the breaker regardless of the window; 0 turns it off. Default 5.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = failures;
        self
    }

    /// Detects slow calls: at least `duration` (until the response body ends) is slow, and a slow
    /// share of `rate` opens the breaker. Default off.
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.config.slow_call_duration = duration;
        self.config.slow_call_rate_threshold = rate;
        self
    }

    /// How long an open breaker rejects calls. Default 30 s.
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.config.wait_in_open = wait;
        self
    }

    /// Grows the open wait by `multiplier` after each failed recovery, up to `max`, spread by ±
    /// `jitter` (a fraction). Default fixed wait (multiplier 1, no jitter, cap 5 min).
    pub fn open_backoff(mut self, multiplier: f64, max: Duration, jitter: f64) -> Self {
        self.config.open_backoff_multiplier = multiplier;
        self.config.max_wait_in_open = max;
        self.config.open_wait_jitter = jitter;
        self
    }

    /// Probes admitted at once when half-open. Default 3.
    pub fn permitted_calls_in_half_open(mut self, probes: u32) -> Self {
        self.config.permitted_calls_in_half_open = probes;
        self
    }

    /// Probe successes that close the breaker. Default 3.
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.config.success_threshold = successes;
        self
    }

    /// The longest half-open period before the breaker reopens; zero for no limit. Default 30 s.
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.config.max_wait_in_half_open = wait;
        self
    }

    /// Leave open (and timed-out half-open) states by timer. Default false (on the next call).
    pub fn automatic_transition(mut self, enabled: bool) -> Self {
        self.config.automatic_transition = enabled;
        self
    }

    /// Log each state change. Default true; turn it off when an
    /// [`on_state_change`](Self::on_state_change) callback logs what the change means.
    pub fn log_state_changes(mut self, enabled: bool) -> Self {
        self.config.log_state_changes = enabled;
        self
    }

    palisade_core::enforcement_setters!(
        "the breaker records and logs when it would open, and admits every call."
    );

    /// Random extra `Retry-After` on server rejections. Default 0.
    pub fn retry_after_jitter(mut self, jitter: Duration) -> Self {
        self.config.retry_after_jitter = jitter;
        self
    }

    /// Per-route and per-key scopes: the most breakers kept. Default 1024.
    pub fn max_breakers(mut self, max: u32) -> Self {
        self.config.max_breakers = max;
        self
    }

    /// Per-route and per-key scopes: idle time after which a breaker may be evicted. Default 10 min.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle_timeout = idle;
        self
    }

    /// Calls `callback` on every state change, on the thread that made it (keep it short; it runs
    /// after the change, so it cannot block it). Shared by every breaker of a scope.
    pub fn on_state_change(
        mut self,
        callback: impl Fn(&StateChange<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.push(Arc::new(callback));
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    pub(crate) fn parts(self) -> Result<(Arc<str>, Arc<Settings>, Hooks), ConfigError> {
        let settings = Arc::new(self.config.settings()?);
        Ok((
            Arc::from(&*self.config.name),
            settings,
            Hooks(self.hooks.into()),
        ))
    }

    /// Validates and builds the breaker.
    ///
    /// # Errors
    ///
    /// As [`Breaker::from_config`].
    pub fn build(self) -> Result<Breaker, ConfigError> {
        let (name, settings, hooks) = self.parts()?;
        Ok(Breaker::from_settings(name, settings, hooks))
    }
}
