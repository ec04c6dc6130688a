//! Hedging: a second attempt when the first is slow; the first useful answer wins.
//!
//! Dean and Barroso ("The Tail at Scale", 2013) hedge after the 95th-percentile latency: about
//! 5 % more requests for a much shorter tail. Here the delay is fixed (`hedge_after`): set it
//! near the upstream's observed p95. An adaptive delay would follow the upstream as it slows
//! down, which is when hedges add the most load; a fixed one is predictable, and the hedge is
//! drawn from the retry budget like any retry, so a slow upstream gets at most the budgeted
//! extra load either way.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    task::Poll,
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    attempt::{Policy, timed},
    error::RetryError,
    policy::Verdict,
};

/// Runs attempt 1 and, if it has not answered after `after` (and the deadline, the attempt
/// limit and the budget allow), attempt 2 beside it. The first result that needs no retry wins
/// and the other attempt is dropped (cancelled); if the first to finish is a retryable failure,
/// the other is awaited. Returns the result, the attempt that produced it and the attempts
/// started.
pub(crate) async fn race<T, E, F, Fut, D>(
    policy: &Policy,
    host: Option<&str>,
    deadline: Instant,
    after: Duration,
    make: &mut F,
    decide: &D,
) -> (Result<T, RetryError<E>>, u32, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    D: Fn(&Result<T, RetryError<E>>) -> Verdict,
{
    let mut first = pin!(timed(policy, make(1), 1));
    let hedge_at = Instant::now() + after;
    if hedge_at >= deadline {
        return (first.await, 1, 1);
    }
    let mut timer = pin!(tokio::time::sleep_until(hedge_at));
    let early = poll_fn(|cx| {
        if let Poll::Ready(result) = first.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await;
    if let Some(result) = early {
        return (result, 1, 1);
    }
    if policy.withdraw(host).is_none() {
        return (first.await, 1, 1);
    }
    tracing::debug!(client = %policy.name, after_ms = after.as_millis(), "hedging");
    let mut second = pin!(timed(policy, make(2), 2));
    let (result, winner) = poll_fn(|cx| {
        if let Poll::Ready(result) = first.as_mut().poll(cx) {
            return Poll::Ready((result, 1));
        }
        second.as_mut().poll(cx).map(|result| (result, 2))
    })
    .await;
    if !matches!(decide(&result), Verdict::Retryable(_)) {
        // Returning drops the slower attempt: its connection is closed and the upstream stops
        // working on it as soon as it notices.
        return (result, winner, 2);
    }
    drop(result);
    if winner == 1 {
        (second.await, 2, 2)
    } else {
        (first.await, 1, 2)
    }
}
