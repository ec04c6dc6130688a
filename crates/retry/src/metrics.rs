//! Metric names and handles. Handles are registered once when a layer or retrier is built, so
//! a call costs an atomic add; install the metrics recorder (exporter) first.

use metrics::{Counter, Gauge, Unit, describe_counter, describe_gauge};
use palisade_core::EnforcementMode;

/// Calls by `client`, `outcome` and `mode`: `first_try_ok`, `retry_ok`, `exhausted` (attempts,
/// deadline or `Retry-After` used up), `budget_exhausted`, `not_retryable`; with
/// `mode="observe_only"` also `retryable` (would have retried; `budget_exhausted` then means
/// would have been refused by the budget).
pub const ATTEMPTS: &str = "palisade_retry_attempts_total";
/// The retries the budget allows now, by `client` (for a per-host budget: the host last used).
pub const BUDGET_TOKENS: &str = "palisade_retry_budget_tokens";

/// How a call ended, as counted in [`ATTEMPTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    FirstTryOk,
    RetryOk,
    Exhausted,
    BudgetExhausted,
    NotRetryable,
    RetryObserved,
    BudgetExhaustedObserved,
}

impl Outcome {
    const ALL: [Self; 7] = [
        Self::FirstTryOk,
        Self::RetryOk,
        Self::Exhausted,
        Self::BudgetExhausted,
        Self::NotRetryable,
        Self::RetryObserved,
        Self::BudgetExhaustedObserved,
    ];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::FirstTryOk => "first_try_ok",
            Self::RetryOk => "retry_ok",
            Self::Exhausted => "exhausted",
            // Observe-only's refusals carry `mode="observe_only"`, not a name of their own.
            Self::BudgetExhausted | Self::BudgetExhaustedObserved => "budget_exhausted",
            Self::NotRetryable => "not_retryable",
            Self::RetryObserved => "retryable",
        }
    }

    /// Whether a call can end this way in `mode`; the others get no series.
    const fn possible(self, mode: EnforcementMode) -> bool {
        match self {
            Self::FirstTryOk | Self::NotRetryable | Self::Exhausted => true,
            Self::RetryOk | Self::BudgetExhausted => mode.enforces(),
            Self::RetryObserved | Self::BudgetExhaustedObserved => !mode.enforces(),
        }
    }
}

pub(crate) struct Metrics {
    outcomes: [Counter; 7],
    pub(crate) tokens: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(client: &str, mode: EnforcementMode) -> Self {
        describe_counter!(
            ATTEMPTS,
            Unit::Count,
            "Outgoing calls by how retrying ended: first_try_ok, retry_ok, exhausted, budget_exhausted, not_retryable (observe-only mode: retryable, what would have been retried)."
        );
        describe_gauge!(
            BUDGET_TOKENS,
            Unit::Count,
            "Retries the retry budget allows now."
        );
        let client = client.to_owned();
        let label = mode.label();
        Self {
            outcomes: Outcome::ALL.map(|outcome| {
                if outcome.possible(mode) {
                    metrics::counter!(ATTEMPTS, "client" => client.clone(), "outcome" => outcome.as_str(), "mode" => label)
                } else {
                    Counter::noop()
                }
            }),
            tokens: metrics::gauge!(BUDGET_TOKENS, "client" => client),
        }
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].increment(1);
    }
}
