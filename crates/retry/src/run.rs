//! [`Retrier`]: the same retries for code that is not a tower service.

use std::{borrow::Cow, fmt, future::Future, sync::Arc, time::Duration};

use palisade_core::ConfigError;

use crate::{
    attempt::{Policy, Settings, drive},
    backoff::{Random, RandomSource},
    budget::RetryBudget,
    config::{BudgetConfig, RetryConfig},
    error::RetryError,
    layer::common_setters,
    policy::Verdict,
};

/// Retries any async operation (a database connect, a Redis call) with the same backoff,
/// deadline, budget, metrics and spans as [`RetryLayer`](crate::RetryLayer).
///
/// The HTTP settings (`retry_statuses`, `max_replay_body`) do not apply: the operation is a
/// closure that makes a new attempt each time it is called, and a closure over its error
/// decides what is retryable. With `hedge_after` set, the closure may run twice concurrently.
///
/// ```
/// use std::{sync::atomic::{AtomicU32, Ordering}, time::Duration};
/// use palisade_retry::{Retrier, RetryError};
///
/// #[derive(Debug)]
/// enum DbError { ConnectionReset, UniqueViolation }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let retry = Retrier::builder().name("database").max_attempts(3).build()?;
/// let calls = AtomicU32::new(0);
/// let rows = retry
///     .run_if(
///         // A constraint violation fails the same way every time: do not retry it.
///         |e: &DbError| matches!(e, DbError::ConnectionReset),
///         || async {
///             match calls.fetch_add(1, Ordering::SeqCst) {
///                 0 => Err(DbError::ConnectionReset),
///                 _ => Ok(42),
///             }
///         },
///     )
///     .await;
/// assert_eq!(rows.unwrap(), 42);
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
///
/// let err = retry.run_if(|_: &DbError| false, || async { Err::<(), _>(DbError::UniqueViolation) }).await;
/// assert!(matches!(err, Err(RetryError::Inner(DbError::UniqueViolation))));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Retrier {
    policy: Arc<Policy>,
}

impl fmt::Debug for Retrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrier")
            .field("client", &self.policy.name)
            .field("max_attempts", &self.policy.max_attempts)
            .field("budget", &self.policy.budget)
            .finish_non_exhaustive()
    }
}

impl Default for Retrier {
    fn default() -> Self {
        Self::new()
    }
}

impl Retrier {
    /// A retrier with the defaults of [`RetryConfig`].
    ///
    /// # Panics
    ///
    /// Never: the defaults are valid (a unit test checks them).
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder starting from the defaults.
    pub fn builder() -> RetrierBuilder {
        RetrierBuilder {
            settings: Settings::default(),
        }
    }

    /// A retrier with `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the invalid field (see [`RetryConfig::validate`]).
    pub fn from_config(config: RetryConfig) -> Result<Self, ConfigError> {
        RetrierBuilder {
            settings: Settings {
                config,
                ..Settings::default()
            },
        }
        .build()
    }

    pub(crate) fn from_policy(policy: Arc<Policy>) -> Self {
        Self { policy }
    }

    /// The budget this retrier draws from.
    pub fn budget(&self) -> &RetryBudget {
        &self.policy.budget
    }

    /// Runs `operation` until it succeeds, retrying every error.
    ///
    /// # Errors
    ///
    /// The last attempt's error, or its timeout, when the attempts, the deadline or the
    /// budget are used up.
    pub async fn run<T, E, F, Fut>(&self, operation: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_if(|_: &E| true, operation).await
    }

    /// Runs `operation` until it succeeds or fails with an error that `retryable` refuses.
    ///
    /// # Errors
    ///
    /// The last attempt's error (at once for an error `retryable` refuses), or its timeout.
    pub async fn run_if<T, E, P, F, Fut>(
        &self,
        retryable: P,
        mut operation: F,
    ) -> Result<T, RetryError<E>>
    where
        P: Fn(&E) -> bool,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        drive(
            &self.policy,
            None,
            true,
            |_| operation(),
            |result| match result {
                Ok(_) => Verdict::Success,
                Err(RetryError::Inner(e)) if !retryable(e) => Verdict::Fatal,
                Err(_) => Verdict::Retryable(None),
            },
        )
        .await
    }
}

/// Builds a [`Retrier`]; every setter documents its default.
#[must_use]
pub struct RetrierBuilder {
    settings: Settings,
}

impl fmt::Debug for RetrierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetrierBuilder")
            .field("config", &self.settings.config)
            .finish_non_exhaustive()
    }
}

impl RetrierBuilder {
    common_setters!();

    /// Validates and builds the retrier (and registers its metrics).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the invalid field (see [`RetryConfig::validate`]).
    pub fn build(self) -> Result<Retrier, ConfigError> {
        Ok(Retrier {
            policy: Arc::new(self.settings.build()?),
        })
    }
}
