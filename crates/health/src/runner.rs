//! Running checks: one task per run, under a timeout, with panics caught; a result cache; single
//! flight (concurrent probes share one run); and the background loop.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, Weak},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use pin_project::pin_project;
use tokio::{sync::watch, time::Instant};

use crate::{
    Status,
    check::{Check, DynCheck, Schedule},
    metrics::CheckMetrics,
    status::CheckResult,
};

/// How long a probe waits past a run's timeout before giving up on it. The run's own timeout
/// fires first unless its task cannot be polled (a check that blocks its thread).
const WAIT_GRACE: Duration = Duration::from_millis(50);

/// One finished run.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub(crate) status: Status,
    pub(crate) output: Option<Arc<str>>,
    /// When the run ended: TTLs and staleness count from here.
    pub(crate) at: Instant,
    /// The same moment on the wall clock, for the report's `time`.
    pub(crate) wall: SystemTime,
    pub(crate) duration: Duration,
}

impl Observation {
    fn failed(output: impl Into<Arc<str>>, at: Instant, duration: Duration) -> Self {
        Self {
            status: Status::Fail,
            output: Some(output.into()),
            at,
            wall: SystemTime::now(),
            duration,
        }
    }
}

type Slot = Option<Observation>;

struct Running {
    result: watch::Receiver<Slot>,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    last: Option<Observation>,
    running: Option<Running>,
}

/// A registered check with its cache.
pub(crate) struct CheckEntry {
    pub(crate) name: Arc<str>,
    pub(crate) critical: bool,
    pub(crate) schedule: Schedule,
    timeout: Duration,
    check: Arc<dyn DynCheck>,
    state: Mutex<State>,
    metrics: CheckMetrics,
}

/// What a probe gets from a check right now.
pub(crate) enum Lookup {
    /// A result to report.
    Ready(Observation),
    /// A run is in flight: wait for it.
    Wait(Ticket),
}

/// A place in line for the result of a run in flight.
pub(crate) struct Ticket {
    result: watch::Receiver<Slot>,
    deadline: Instant,
}

impl Ticket {
    /// The run's result; a failure if the run cannot finish by its deadline or its task is gone.
    pub(crate) async fn wait(mut self) -> Observation {
        let started = Instant::now();
        match tokio::time::timeout_at(self.deadline, self.result.wait_for(Option::is_some)).await {
            Ok(Ok(slot)) => slot.clone().expect("waited for a result"),
            Ok(Err(_)) => Observation::failed(
                "check task ended without a result (runtime shutting down)",
                Instant::now(),
                started.elapsed(),
            ),
            Err(_) => Observation::failed(
                "check did not finish by its deadline (blocked thread?)",
                Instant::now(),
                started.elapsed(),
            ),
        }
    }
}

impl CheckEntry {
    pub(crate) fn new(check: Check) -> Self {
        Self {
            metrics: CheckMetrics::new(&check.name),
            name: Arc::from(check.name.as_ref()),
            critical: check.critical,
            schedule: check.schedule,
            timeout: check.timeout,
            check: check.implementation,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Critical sections only move plain values: a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long a result may be reported.
    fn fresh_for(&self) -> Duration {
        match self.schedule {
            Schedule::OnDemand { ttl } => ttl,
            Schedule::Background { period } => {
                period.saturating_mul(2).saturating_add(self.timeout)
            }
        }
    }

    fn is_fresh(&self, observation: &Observation, now: Instant) -> bool {
        let age = now.saturating_duration_since(observation.at);
        match self.schedule {
            // A TTL of zero means "never reuse", not "reuse within the same instant".
            Schedule::OnDemand { ttl } => age < ttl,
            Schedule::Background { .. } => age <= self.fresh_for(),
        }
    }

    /// A fresh cached result, without starting anything.
    pub(crate) fn peek(&self, now: Instant) -> Option<Observation> {
        let state = self.state();
        state
            .last
            .as_ref()
            .filter(|o| self.is_fresh(o, now))
            .cloned()
    }

    /// The result to report: a fresh cached result, or a place in line for the run in flight,
    /// or a new run.
    pub(crate) fn lookup(self: &Arc<Self>, now: Instant) -> Lookup {
        let mut state = self.state();
        if let Some(last) = state.last.as_ref().filter(|o| self.is_fresh(o, now)) {
            return Lookup::Ready(last.clone());
        }
        if let Some(running) = &state.running {
            return Lookup::Wait(Ticket {
                result: running.result.clone(),
                deadline: running.deadline,
            });
        }
        Lookup::Wait(self.start(&mut state, now))
    }

    /// The last result known, without waiting or starting anything: for probes that fail
    /// anyway (starting, draining) and report checks only as information. A stale result of a
    /// background check is reported as a failure.
    pub(crate) fn known(&self, now: Instant) -> Option<Observation> {
        let last = self.state().last.clone()?;
        Some(if self.is_fresh(&last, now) {
            last
        } else {
            self.as_stale(last, now)
        })
    }

    fn as_stale(&self, observation: Observation, now: Instant) -> Observation {
        match self.schedule {
            // An old on-demand result is simply the last one known.
            Schedule::OnDemand { .. } => observation,
            Schedule::Background { .. } => {
                let age = now.saturating_duration_since(observation.at);
                Observation {
                    status: Status::Fail,
                    output: Some(
                        format!(
                            "stale: last result {} ms old, limit {} ms",
                            age.as_millis(),
                            self.fresh_for().as_millis()
                        )
                        .into(),
                    ),
                    ..observation
                }
            }
        }
    }

    /// Starts a run in its own task. Called with the state locked, so there is one at a time.
    fn start(self: &Arc<Self>, state: &mut State, now: Instant) -> Ticket {
        let (tx, rx) = watch::channel(None);
        let deadline = now + self.timeout + WAIT_GRACE;
        state.running = Some(Running {
            result: rx.clone(),
            deadline,
        });
        let entry = Arc::clone(self);
        tokio::spawn(async move {
            let observation = entry.execute().await;
            entry.finish(observation.clone());
            let _ = tx.send(Some(observation));
        });
        Ticket {
            result: rx,
            deadline,
        }
    }

    /// Joins the run in flight or starts one (the background loop's way in).
    fn run_or_join(self: &Arc<Self>) -> Ticket {
        let mut state = self.state();
        if let Some(running) = &state.running {
            return Ticket {
                result: running.result.clone(),
                deadline: running.deadline,
            };
        }
        self.start(&mut state, Instant::now())
    }

    /// One run: the check under its timeout, with panics caught.
    async fn execute(&self) -> Observation {
        let started = Instant::now();
        let run = CatchUnwind(Arc::clone(&self.check).run());
        let result = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(check = %self.name, panic = %message, "health check panicked");
                CheckResult::fail(format!("check panicked: {message}"))
            }
            Err(_) => {
                tracing::warn!(check = %self.name, timeout_ms = self.timeout.as_millis(), "health check timed out");
                CheckResult::fail(format!(
                    "check timed out after {} ms",
                    self.timeout.as_millis()
                ))
            }
        };
        let duration = started.elapsed();
        let (status, output) = result.into_parts();
        self.metrics.record(status, duration.as_secs_f64());
        Observation {
            status,
            output,
            at: Instant::now(),
            wall: SystemTime::now(),
            duration,
        }
    }

    /// Stores a finished run and logs a change of status.
    fn finish(&self, observation: Observation) {
        let status = observation.status;
        let output = observation.output.clone();
        let previous = {
            let mut state = self.state();
            state.running = None;
            state.last.replace(observation).map(|o| o.status)
        };
        if previous == Some(status) {
            return;
        }
        let output = output.as_deref().unwrap_or("");
        let from = previous.map_or("none", Status::as_str);
        let to = status.as_str();
        match status {
            Status::Pass => {
                tracing::info!(check = %self.name, from, to, "health check status changed");
            }
            Status::Warn | Status::Fail => {
                tracing::warn!(check = %self.name, from, to, output, "health check status changed");
            }
        }
    }
}

/// Runs a background check every `period` for as long as the entry exists.
pub(crate) async fn background_loop(entry: Weak<CheckEntry>, period: Duration) {
    let mut next = Instant::now();
    loop {
        let ticket = match entry.upgrade() {
            Some(entry) => entry.run_or_join(),
            None => return,
        };
        let _ = ticket.wait().await;
        next += period;
        let now = Instant::now();
        if next < now {
            // A run took longer than the period: start the next one now, and keep the rhythm
            // from here rather than running back to back to catch up.
            next = now;
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Catches a panic while polling the inner future.
#[pin_project]
struct CatchUnwind<F>(#[pin] F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn entry(check: Check) -> Arc<CheckEntry> {
        Arc::new(CheckEntry::new(check))
    }

    async fn get(entry: &Arc<CheckEntry>) -> Observation {
        match entry.lookup(Instant::now()) {
            Lookup::Ready(o) => o,
            Lookup::Wait(t) => t.wait().await,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_check_fails_with_the_message() {
        let e = entry(
            Check::from_fn("boom", || async {
                panic!("kaboom");
                #[allow(unreachable_code)]
                true
            })
            .on_demand(Duration::ZERO),
        );
        let o = get(&e).await;
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.output.as_deref(), Some("check panicked: kaboom"));
        // The panic left nothing behind: the next probe runs the check again.
        assert_eq!(get(&e).await.status, Status::Fail);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_panicking_before_its_future_exists_fails_too() {
        let e = entry(
            Check::from_fn("early", || -> std::future::Ready<bool> {
                panic!("{}", String::from("before the future"))
            })
            .on_demand(Duration::ZERO),
        );
        let o = get(&e).await;
        assert_eq!(
            o.output.as_deref(),
            Some("check panicked: before the future")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_times_out_at_its_timeout() {
        let e = entry(
            Check::from_fn("hang", std::future::pending::<bool>)
                .timeout(Duration::from_millis(300))
                .on_demand(Duration::ZERO),
        );
        let start = Instant::now();
        let o = get(&e).await;
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.output.as_deref(), Some("check timed out after 300 ms"));
        assert_eq!(o.duration, Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_reuses_results_then_runs_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let e = entry(
            Check::from_fn("db", move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { true }
            })
            .on_demand(Duration::from_secs(2)),
        );
        assert!(e.known(Instant::now()).is_none());
        get(&e).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(e.peek(Instant::now()).is_some());
        get(&e).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "within the TTL");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(e.peek(Instant::now()).is_none());
        // An expired on-demand result is still the last one known.
        assert_eq!(e.known(Instant::now()).unwrap().status, Status::Pass);
        get(&e).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "after the TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn background_results_go_stale() {
        let e = entry(Check::from_fn("bg", || async { true }).every(Duration::from_secs(5)));
        let o = get(&e).await;
        assert_eq!(o.status, Status::Pass);
        // 2 × 5 s + 500 ms.
        tokio::time::advance(Duration::from_millis(10_500)).await;
        assert!(e.peek(Instant::now()).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        let stale = e.known(Instant::now()).expect("a stale result is reported");
        assert_eq!(stale.status, Status::Fail);
        assert!(
            stale
                .output
                .unwrap()
                .starts_with("stale: last result 10501 ms old")
        );
    }

    #[test]
    fn panic_messages() {
        assert_eq!(panic_message(&"a"), "a");
        assert_eq!(panic_message(&String::from("b")), "b");
        assert_eq!(panic_message(&7_u8), "non-string panic payload");
    }
}
