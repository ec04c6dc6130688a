//! Every transition of the breaker, on a paused tokio clock: both window types, minimum calls,
//! consecutive failures, slow calls, the open wait and its backoff, half-open probe limits and
//! timeouts, automatic transitions, forced states, quiet routes, callbacks, and stale or
//! cancelled calls.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_circuit_breaker::{
    Breaker, BreakerError, Cause, CircuitBreakerBuilder, Outcome, State,
};
use palisade_core::EnforcementMode;
use tokio::time::{advance, sleep};

const WAIT: Duration = Duration::from_secs(30);

/// A count-window breaker with only the failure rate (no consecutive trip), so each test sees
/// exactly one mechanism at work.
fn rate_only() -> CircuitBreakerBuilder {
    Breaker::builder()
        .count_window(10)
        .minimum_calls(5)
        .failure_rate_threshold(0.5)
        .consecutive_failures(0)
}

fn ok() -> std::future::Ready<Result<(), &'static str>> {
    std::future::ready(Ok(()))
}

fn fail() -> std::future::Ready<Result<(), &'static str>> {
    std::future::ready(Err("dependency down"))
}

async fn outcomes(breaker: &Breaker, pattern: &str) {
    for c in pattern.chars() {
        let result = match c {
            's' => breaker.call(ok()).await,
            'f' => breaker.call(fail()).await,
            other => panic!("pattern {other:?}"),
        };
        assert!(
            !matches!(result, Err(BreakerError::Rejected(_))),
            "rejected while replaying {pattern:?}"
        );
    }
}

fn rejected_in(breaker: &Breaker) -> Duration {
    match breaker.try_acquire() {
        Err(rejected) => rejected.retry_in(),
        Ok(permit) => panic!(
            "admitted (probe: {}) in {:?}",
            permit.is_probe(),
            breaker.state()
        ),
    }
}

/// Records every state change a breaker reports.
#[derive(Clone, Default)]
struct Changes(Arc<Mutex<Vec<(State, State, Cause)>>>);

impl Changes {
    fn attach(&self, builder: CircuitBreakerBuilder) -> CircuitBreakerBuilder {
        let seen = self.0.clone();
        builder.on_state_change(move |c| seen.lock().unwrap().push((c.from, c.to, c.cause)))
    }

    fn take(&self) -> Vec<(State, State, Cause)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn count_window_opens_at_the_failure_rate_after_minimum_calls() {
    let changes = Changes::default();
    let breaker = changes.attach(rate_only()).build().unwrap();
    // 4 calls, all failed: 100% but below the minimum of 5.
    outcomes(&breaker, "ffff").await;
    assert_eq!(breaker.state(), State::Closed);
    // The fifth call reaches the minimum: 4/5 failed.
    outcomes(&breaker, "s").await;
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        changes.take(),
        vec![(State::Closed, State::Open, Cause::FailureRate)]
    );
    assert_eq!(rejected_in(&breaker), WAIT);
}

#[tokio::test(start_paused = true)]
async fn count_window_forgets_calls_beyond_its_size() {
    let breaker = rate_only().build().unwrap();
    // 4 failures among the last 10 calls (40%), then 10 successes push them out of the window.
    outcomes(&breaker, "ssssssssssffff").await;
    assert_eq!(breaker.snapshot().failures, 4);
    outcomes(&breaker, "ssssssssss").await;
    let s = breaker.snapshot();
    assert_eq!((s.calls, s.failures), (10, 0));
    // Now 4 failures out of 10: 40%, closed; the fifth makes 50%.
    outcomes(&breaker, "ffff").await;
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().failure_rate, Some(0.4));
    outcomes(&breaker, "f").await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_counts_only_recent_calls() {
    let breaker = Breaker::builder()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(4)
        .consecutive_failures(0)
        .build()
        .unwrap();
    outcomes(&breaker, "fff").await;
    // 11 s later those failures have left the window.
    advance(Duration::from_secs(11)).await;
    outcomes(&breaker, "sfs").await;
    let s = breaker.snapshot();
    assert_eq!((s.calls, s.failures, s.state), (3, 1, State::Closed));
    // Within the window: 2 failures out of 4 reach 50%.
    advance(Duration::from_secs(5)).await;
    outcomes(&breaker, "f").await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_evaluates_successes_that_reach_the_minimum() {
    let breaker = Breaker::builder()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(5)
        .consecutive_failures(0)
        .build()
        .unwrap();
    // 4 failures then a success: the success brings the window to its minimum at 80% failed.
    outcomes(&breaker, "ffff").await;
    assert_eq!(breaker.state(), State::Closed);
    outcomes(&breaker, "s").await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_whatever_the_window_holds() {
    let changes = Changes::default();
    let breaker = changes
        .attach(Breaker::builder().count_window(100).consecutive_failures(5))
        .build()
        .unwrap();
    outcomes(&breaker, &"s".repeat(100)).await;
    // A success in between resets the run.
    outcomes(&breaker, "ffffsffff").await;
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().consecutive_failures, 4);
    outcomes(&breaker, "f").await;
    assert_eq!(
        breaker.state(),
        State::Open,
        "5 in a row, at a 9% failure rate"
    );
    assert_eq!(
        changes.take(),
        vec![(State::Closed, State::Open, Cause::ConsecutiveFailures)]
    );
}

#[tokio::test(start_paused = true)]
async fn defaults_reproduce_the_original_plan() {
    // Failure threshold 5, success threshold 3, reset timeout 30 s.
    let breaker = Breaker::builder().build().unwrap();
    outcomes(&breaker, "ffff").await;
    assert_eq!(breaker.state(), State::Closed);
    outcomes(&breaker, "f").await;
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(rejected_in(&breaker), Duration::from_secs(30));
    advance(Duration::from_secs(30)).await;
    for _ in 0..3 {
        assert_ne!(breaker.state(), State::Closed);
        breaker.call(ok()).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_the_remaining_time_then_half_opens_on_the_next_call() {
    let changes = Changes::default();
    let breaker = changes
        .attach(
            rate_only()
                .permitted_calls_in_half_open(1)
                .success_threshold(1),
        )
        .build()
        .unwrap();
    outcomes(&breaker, "fffff").await;
    changes.take();
    assert_eq!(rejected_in(&breaker), WAIT);
    advance(Duration::from_millis(12_300)).await;
    let remaining = rejected_in(&breaker);
    assert_eq!(remaining, Duration::from_millis(17_700));
    match breaker.call(ok()).await {
        Err(BreakerError::Rejected(r)) => {
            assert_eq!(r.state(), State::Open);
            assert_eq!(r.retry_after_secs(), 18, "rounded up");
            assert_eq!(r.breaker(), "default");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(breaker.snapshot().rejected, 3);
    advance(Duration::from_millis(17_700)).await;
    // Lazy transition: still open until a call arrives.
    assert_eq!(breaker.state(), State::Open);
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(breaker.state(), State::HalfOpen);
    probe.success();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        changes.take(),
        vec![
            (State::Open, State::HalfOpen, Cause::WaitElapsed),
            (State::HalfOpen, State::Closed, Cause::ProbesSucceeded),
        ]
    );
    assert_eq!(breaker.snapshot().calls, 0, "the window starts empty");
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_permitted_probes_and_closes_after_the_successes() {
    let breaker = rate_only()
        .permitted_calls_in_half_open(2)
        .success_threshold(3)
        .build()
        .unwrap();
    outcomes(&breaker, "fffff").await;
    advance(WAIT).await;
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    assert!(a.is_probe() && b.is_probe());
    assert_eq!(rejected_in(&breaker), Duration::ZERO, "both slots taken");
    assert_eq!(breaker.snapshot().probes_in_flight, 2);
    a.success();
    let c = breaker.try_acquire().unwrap();
    assert_eq!(rejected_in(&breaker), Duration::ZERO);
    b.success();
    assert_eq!(breaker.state(), State::HalfOpen, "2 of 3 successes");
    c.success();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_frees_its_slot() {
    let breaker = rate_only().permitted_calls_in_half_open(1).build().unwrap();
    outcomes(&breaker, "fffff").await;
    advance(WAIT).await;
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(rejected_in(&breaker), Duration::ZERO);
    drop(probe);
    // A cancelled guard call too.
    let pending = breaker.call(std::future::pending::<Result<(), ()>>());
    let cancelled = tokio::time::timeout(Duration::from_secs(1), pending).await;
    assert!(cancelled.is_err());
    let s = breaker.snapshot();
    assert_eq!((s.state, s.probes_in_flight), (State::HalfOpen, 0));
    assert!(breaker.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_exponential_capped_backoff() {
    let changes = Changes::default();
    let breaker = changes
        .attach(
            rate_only()
                .wait_in_open(Duration::from_secs(10))
                .open_backoff(2.0, Duration::from_secs(60), 0.0)
                .permitted_calls_in_half_open(1),
        )
        .build()
        .unwrap();
    outcomes(&breaker, "fffff").await;
    let mut waits = vec![rejected_in(&breaker)];
    for _ in 0..4 {
        advance(*waits.last().unwrap()).await;
        assert!(matches!(
            breaker.call(fail()).await,
            Err(BreakerError::Inner(_))
        ));
        assert_eq!(breaker.state(), State::Open);
        waits.push(rejected_in(&breaker));
    }
    let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [10, 20, 40, 60, 60]);
    assert_eq!(breaker.snapshot().failed_recoveries, 4);
    assert!(
        changes
            .take()
            .contains(&(State::HalfOpen, State::Open, Cause::ProbeFailed))
    );
    // A recovery resets the backoff.
    advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        breaker.call(ok()).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    outcomes(&breaker, "fffff").await;
    assert_eq!(rejected_in(&breaker), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn jittered_waits_stay_within_their_bounds() {
    let breaker = rate_only()
        .wait_in_open(Duration::from_secs(10))
        .open_backoff(1.0, Duration::from_secs(60), 0.5)
        .build()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        breaker.reset();
        outcomes(&breaker, "fffff").await;
        let wait = rejected_in(&breaker);
        assert!(
            (Duration::from_secs(5)..=Duration::from_secs(15)).contains(&wait),
            "{wait:?}"
        );
        seen.insert(wait.as_millis());
    }
    assert!(seen.len() > 10, "jitter spreads the waits: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn half_open_times_out_when_probes_hang() {
    let changes = Changes::default();
    let breaker = changes
        .attach(
            rate_only()
                .permitted_calls_in_half_open(1)
                .max_wait_in_half_open(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    outcomes(&breaker, "fffff").await;
    advance(WAIT).await;
    let hung = breaker.try_acquire().unwrap();
    advance(Duration::from_secs(4)).await;
    assert_eq!(rejected_in(&breaker), Duration::ZERO);
    advance(Duration::from_secs(1)).await;
    // The next caller finds the half-open period over: reopened, with a fresh wait.
    assert_eq!(rejected_in(&breaker), WAIT);
    assert_eq!(breaker.state(), State::Open);
    // The hung probe finally succeeds: too late to count.
    hung.success();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        changes.take()[1..],
        [
            (State::Open, State::HalfOpen, Cause::WaitElapsed),
            (State::HalfOpen, State::Open, Cause::HalfOpenTimeout),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn automatic_transitions_happen_by_timer_without_calls() {
    let changes = Changes::default();
    let breaker = changes
        .attach(
            rate_only()
                .automatic_transition(true)
                .max_wait_in_half_open(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    outcomes(&breaker, "fffff").await;
    sleep(Duration::from_millis(29_999)).await;
    assert_eq!(breaker.state(), State::Open);
    sleep(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen, "no call needed");
    let s = breaker.snapshot();
    assert_eq!(s.remaining, Some(Duration::from_secs(5)));
    // Nobody probes: the half-open period times out by timer too, and the cycle continues.
    sleep(Duration::from_secs(5)).await;
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::Open);
    sleep(WAIT).await;
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(
        changes.take(),
        vec![
            (State::Closed, State::Open, Cause::FailureRate),
            (State::Open, State::HalfOpen, Cause::WaitElapsed),
            (State::HalfOpen, State::Open, Cause::HalfOpenTimeout),
            (State::Open, State::HalfOpen, Cause::WaitElapsed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_breaker_and_slow_probes_fail() {
    let breaker = rate_only()
        .slow_calls(Duration::from_millis(100), 0.5)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let slow = || async {
        sleep(Duration::from_millis(150)).await;
        Ok::<(), ()>(())
    };
    let quick = || async {
        sleep(Duration::from_millis(20)).await;
        Ok::<(), ()>(())
    };
    for _ in 0..2 {
        breaker.call(quick()).await.unwrap();
        breaker.call(slow()).await.unwrap();
    }
    let s = breaker.snapshot();
    assert_eq!((s.calls, s.failures, s.slow_calls), (4, 0, 2));
    assert_eq!(
        breaker.state(),
        State::Closed,
        "below the minimum of 5 calls"
    );
    breaker.call(slow()).await.unwrap();
    assert_eq!(breaker.state(), State::Open, "3 of 5 calls slow");
    // A slow probe means the dependency has not recovered.
    advance(WAIT).await;
    breaker.call(slow()).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
    advance(WAIT).await;
    for _ in 0..3 {
        breaker.call(quick()).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn forced_states_disabled_and_reset() {
    let changes = Changes::default();
    let breaker = changes.attach(rate_only()).build().unwrap();
    breaker.force_open();
    assert_eq!(breaker.state(), State::ForcedOpen);
    match breaker.call(ok()).await {
        Err(BreakerError::Rejected(r)) => {
            assert_eq!(r.state(), State::ForcedOpen);
            assert_eq!(r.retry_in(), WAIT);
        }
        other => panic!("{other:?}"),
    }
    advance(Duration::from_secs(3600)).await;
    assert_eq!(
        breaker.state(),
        State::ForcedOpen,
        "stays until changed by hand"
    );

    breaker.disable();
    outcomes(&breaker, &"f".repeat(50)).await;
    let s = breaker.snapshot();
    assert_eq!((s.state, s.calls), (State::Disabled, 0), "records nothing");

    breaker.force_closed();
    outcomes(&breaker, "ffff").await;
    breaker.reset();
    assert_eq!(breaker.snapshot().calls, 0);
    outcomes(&breaker, "ffff").await;
    assert_eq!(
        breaker.state(),
        State::Closed,
        "reset forgot the earlier failures"
    );

    breaker.trip();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(rejected_in(&breaker), WAIT);
    assert_eq!(
        changes
            .take()
            .into_iter()
            .map(|(_, to, cause)| (to, cause))
            .collect::<Vec<_>>(),
        vec![
            (State::ForcedOpen, Cause::Manual),
            (State::Disabled, Cause::Manual),
            (State::Closed, Cause::Manual),
            // The reset of a closed breaker is not a state change.
            (State::Open, Cause::Manual),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_only_records_but_never_rejects() {
    let breaker = rate_only()
        .mode(EnforcementMode::ObserveOnly)
        .build()
        .unwrap();
    assert_eq!(breaker.state(), State::MetricsOnly);
    outcomes(&breaker, &"f".repeat(20)).await;
    let s = breaker.snapshot();
    assert_eq!((s.state, s.calls, s.failures), (State::MetricsOnly, 10, 10));
    // Switched to enforcement by hand, it starts from an empty window.
    breaker.force_closed();
    outcomes(&breaker, "fffff").await;
    assert_eq!(breaker.state(), State::Open);
    breaker.metrics_only();
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn quiet_routes_still_open() {
    // One call every 4 s never puts 5 calls in a 10 s window (resilience4j#747): the rate alone
    // would never open. The default consecutive-failure trip is not windowed and does.
    let ten_seconds = || Breaker::builder().time_window(Duration::from_secs(10), 10);
    let quiet = ten_seconds().build().unwrap();
    let rate_alone = ten_seconds().consecutive_failures(0).build().unwrap();
    for call in 1..=5 {
        outcomes(&quiet, "f").await;
        outcomes(&rate_alone, "f").await;
        assert!(rate_alone.snapshot().calls <= 3);
        if call < 5 {
            assert_eq!(quiet.state(), State::Closed);
            advance(Duration::from_secs(4)).await;
        }
    }
    assert_eq!(quiet.state(), State::Open);
    assert_eq!(rate_alone.state(), State::Closed);
    // Alternatively, a minimum the window can reach on that route works through the rate.
    let lowered = ten_seconds()
        .minimum_calls(2)
        .consecutive_failures(0)
        .build()
        .unwrap();
    outcomes(&lowered, "f").await;
    advance(Duration::from_secs(4)).await;
    outcomes(&lowered, "f").await;
    assert_eq!(lowered.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_and_stale_outcomes_do_not_count() {
    let breaker = rate_only().build().unwrap();
    for _ in 0..20 {
        breaker
            .call_with(|_: &Result<(), &str>| Outcome::Ignore, fail())
            .await
            .unwrap_err();
    }
    assert_eq!(breaker.snapshot().calls, 0);
    // A call admitted while closed finishes after the breaker opened and closed again: it
    // belongs to an earlier generation and is not recorded in the new window.
    let late = breaker.try_acquire().unwrap();
    outcomes(&breaker, "fffff").await;
    breaker.force_closed();
    late.failure();
    assert_eq!(breaker.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let breaker = rate_only().build().unwrap();
    let clones: Vec<_> = (0..5).map(|_| breaker.clone()).collect();
    for clone in &clones {
        clone.call(fail()).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
}
