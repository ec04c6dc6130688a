//! The attempt loop that the layer and the retrier share: attempts, verdicts, backoff,
//! `Retry-After`, deadline, budget, outcome.

use std::{future::Future, sync::Arc, time::Duration};

use palisade_core::ConfigError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    backoff::{Backoff, Random},
    budget::{RetryBudget, Withdrawal},
    config::RetryConfig,
    error::RetryError,
    hedge,
    metrics::{Metrics, Outcome},
    policy::{StatusSet, Verdict},
};

/// What a builder collects: the configuration and the runtime handles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) config: RetryConfig,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) random: Option<Random>,
}

impl Settings {
    pub(crate) fn build(self) -> Result<Policy, ConfigError> {
        let config = self.config;
        config.validate()?;
        let budget = match self.budget {
            Some(budget) => budget,
            None => RetryBudget::new(&config.budget).map_err(|e| e.within("budget"))?,
        };
        let metrics = Metrics::new(&config.name, config.mode);
        metrics.tokens.set(budget.balance(None));
        Ok(Policy {
            name: config.name.as_ref().into(),
            enforce: config.mode.enforces(),
            max_attempts: config.max_attempts,
            backoff: Backoff::new(config.base_delay, config.max_delay),
            deadline: config.deadline,
            attempt_timeout: config.attempt_timeout,
            max_retry_after: config.max_retry_after,
            statuses: StatusSet::new(&config.retry_statuses),
            max_replay_body: config.max_replay_body,
            hedge_after: config.hedge_after,
            budget,
            random: self.random.unwrap_or_else(Random::default_source),
            metrics,
        })
    }
}

/// The validated settings, shared (in an `Arc`) by every clone of a layer, service or retrier.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) name: Arc<str>,
    pub(crate) enforce: bool,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) deadline: Duration,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_retry_after: Duration,
    pub(crate) statuses: StatusSet,
    pub(crate) max_replay_body: usize,
    pub(crate) hedge_after: Option<Duration>,
    pub(crate) budget: RetryBudget,
    pub(crate) random: Random,
    pub(crate) metrics: Metrics,
}

impl Policy {
    fn deposit(&self, host: Option<&str>) {
        self.metrics.tokens.set(self.budget.deposit(host));
    }

    /// Takes a retry (or hedge) from the budget.
    pub(crate) fn withdraw(&self, host: Option<&str>) -> Option<Withdrawal> {
        self.budget.withdraw(host).map(|(balance, withdrawal)| {
            self.metrics.tokens.set(balance);
            withdrawal
        })
    }

    /// Gives back the retry of a retry that succeeded.
    fn refund(&self, host: Option<&str>, withdrawal: Withdrawal) {
        self.metrics
            .tokens
            .set(self.budget.refund(host, withdrawal));
    }

    fn finish<T, E>(&self, outcome: Outcome, result: Result<T, E>) -> Result<T, E> {
        self.metrics.record(outcome);
        result
    }
}

/// Runs one attempt inside its span, under the attempt timeout.
pub(crate) async fn timed<T, E, Fut>(
    policy: &Policy,
    attempt: Fut,
    number: u32,
) -> Result<T, RetryError<E>>
where
    Fut: Future<Output = Result<T, E>>,
{
    let span = tracing::debug_span!("retry_attempt", client = %policy.name, attempt = number);
    let attempt = attempt.instrument(span);
    match policy.attempt_timeout {
        Some(limit) => match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result.map_err(RetryError::Inner),
            Err(_) => Err(RetryError::AttemptTimeout(limit)),
        },
        None => attempt.await.map_err(RetryError::Inner),
    }
}

/// Makes attempts with `make(n)` (`n` from 1) until one needs no retry, or the request may not
/// be retried (`retryable` false), or attempts, deadline, `Retry-After` or budget say stop.
/// Returns the last attempt's result and records the call's outcome.
pub(crate) async fn drive<T, E, F, Fut, D>(
    policy: &Policy,
    host: Option<&str>,
    retryable: bool,
    mut make: F,
    decide: D,
) -> Result<T, RetryError<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    D: Fn(&Result<T, RetryError<E>>) -> Verdict,
{
    let deadline = Instant::now() + policy.deadline;
    // Every call earns its share of a retry, retryable or not: the budget is a ratio of the
    // traffic sent to the upstream.
    policy.deposit(host);
    let may_retry = retryable && policy.max_attempts > 1;
    let (mut result, mut winner, mut started) = match policy.hedge_after {
        Some(after) if may_retry && policy.enforce => {
            hedge::race(policy, host, deadline, after, &mut make, &decide).await
        }
        _ => (timed(policy, make(1), 1).await, 1, 1),
    };
    // The withdrawal of the attempt in `result` when it is a retry (not the first attempt, nor a
    // hedge): only a retry that succeeds is refunded; a hedge that wins still sent a second
    // request.
    let mut retried = None;
    loop {
        let retry_after = match decide(&result) {
            Verdict::Success if winner == 1 => return policy.finish(Outcome::FirstTryOk, result),
            Verdict::Success => {
                if let Some(withdrawal) = retried {
                    policy.refund(host, withdrawal);
                }
                return policy.finish(Outcome::RetryOk, result);
            }
            Verdict::Fatal => return policy.finish(Outcome::NotRetryable, result),
            Verdict::Retryable(retry_after) => retry_after,
        };
        if !retryable {
            return policy.finish(Outcome::NotRetryable, result);
        }
        if started >= policy.max_attempts {
            return policy.finish(Outcome::Exhausted, result);
        }
        let mut delay = policy.backoff.delay(started, policy.random.sample());
        if let Some(wait) = retry_after {
            if wait > policy.max_retry_after {
                // Retrying before the upstream asked would only be refused again.
                tracing::debug!(client = %policy.name, retry_after_ms = wait.as_millis(), "Retry-After beyond max_retry_after: not retrying");
                return policy.finish(Outcome::Exhausted, result);
            }
            // Never earlier than asked, and still jittered when the upstream asked for less
            // than the backoff, so clients told the same value do not return in lockstep.
            delay = delay.max(wait);
        }
        if Instant::now()
            .checked_add(delay)
            .is_none_or(|at| at >= deadline)
        {
            return policy.finish(Outcome::Exhausted, result);
        }
        // The budget last: no token is spent on a retry that would not happen anyway.
        let Some(withdrawal) = policy.withdraw(host) else {
            let outcome = if policy.enforce {
                Outcome::BudgetExhausted
            } else {
                Outcome::BudgetExhaustedObserved
            };
            return policy.finish(outcome, result);
        };
        if !policy.enforce {
            return policy.finish(Outcome::RetryObserved, result);
        }
        tracing::debug!(
            client = %policy.name,
            attempt = started + 1,
            delay_ms = delay.as_millis(),
            "retrying"
        );
        // Release the failed response (and its connection) before sleeping.
        drop(result);
        tokio::time::sleep(delay).await;
        started += 1;
        winner = started;
        retried = Some(withdrawal);
        result = timed(policy, make(started), started).await;
    }
}
