//! [`RetryLayer`] and its builder.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use palisade_core::ConfigError;
use tower_layer::Layer;

use crate::{
    attempt::{Policy, Settings},
    backoff::{Random, RandomSource},
    budget::RetryBudget,
    config::{BudgetConfig, RetryConfig},
    policy::AllErrors,
    run::Retrier,
    service::Retry,
};

/// Retries the calls of an HTTP client; see the [crate docs](crate).
///
/// The settings and the [`RetryBudget`] are created once, here: every service the layer makes,
/// and every clone, shares them, so the budget counts all the traffic to the upstream. `C`
/// decides which service errors are retryable ([`AllErrors`] by default).
#[derive(Clone)]
pub struct RetryLayer<C = AllErrors> {
    policy: Arc<Policy>,
    classify: C,
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("client", &self.policy.name)
            .field("max_attempts", &self.policy.max_attempts)
            .field("budget", &self.policy.budget)
            .finish_non_exhaustive()
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryLayer {
    /// A layer with the defaults of [`RetryConfig`].
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
    pub fn builder() -> RetryBuilder {
        RetryBuilder {
            settings: Settings::default(),
            classify: AllErrors,
        }
    }

    /// A layer with `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the invalid field (see [`RetryConfig::validate`]).
    pub fn from_config(config: RetryConfig) -> Result<Self, ConfigError> {
        RetryBuilder {
            settings: Settings {
                config,
                ..Settings::default()
            },
            classify: AllErrors,
        }
        .build()
    }
}

impl<C> RetryLayer<C> {
    /// The budget shared by the services of this layer.
    pub fn budget(&self) -> &RetryBudget {
        &self.policy.budget
    }

    /// A [`Retrier`] with the same settings, budget and metrics, for calls that are not made
    /// through the client (a connection set-up, a call through another library).
    pub fn retrier(&self) -> Retrier {
        Retrier::from_policy(Arc::clone(&self.policy))
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, Arc::clone(&self.policy), self.classify.clone())
    }
}

/// The setters that the layer's and the retrier's builders share.
macro_rules! common_setters {
    () => {
        /// The `client` label of metrics and spans. Default `default`.
        pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
            self.settings.config.name = name.into();
            self
        }

        palisade_core::enforcement_setters!(
            settings.config,
            "decide and count what would be retried (and what the budget would refuse), but never retry or hedge."
        );

        /// Attempts per call, the first included (1 to 10). Default 3.
        pub fn max_attempts(mut self, attempts: u32) -> Self {
            self.settings.config.max_attempts = attempts;
            self
        }

        /// The backoff ceiling of the first retry. Default 100 ms.
        pub fn base_delay(mut self, delay: Duration) -> Self {
            self.settings.config.base_delay = delay;
            self
        }

        /// The cap of the backoff ceiling. Default 400 ms.
        pub fn max_delay(mut self, delay: Duration) -> Self {
            self.settings.config.max_delay = delay;
            self
        }

        /// No attempt starts and no sleep ends later than this after the call began. Default 2 s.
        pub fn deadline(mut self, deadline: Duration) -> Self {
            self.settings.config.deadline = deadline;
            self
        }

        /// The time limit of each attempt. Default none.
        pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
            self.settings.config.attempt_timeout = Some(timeout);
            self
        }

        /// The longest upstream `Retry-After` honoured; a longer one ends the retries.
        /// Default 1 s.
        pub fn max_retry_after(mut self, wait: Duration) -> Self {
            self.settings.config.max_retry_after = wait;
            self
        }

        /// Start a second attempt if the first has not answered after `delay` (set it near the
        /// upstream's p95 latency). Default none. Hedges are drawn from the budget.
        pub fn hedge_after(mut self, delay: Duration) -> Self {
            self.settings.config.hedge_after = Some(delay);
            self
        }

        /// The configuration of the budget this builder creates. Default [`BudgetConfig::default`].
        pub fn budget_config(mut self, budget: BudgetConfig) -> Self {
            self.settings.config.budget = budget;
            self
        }

        /// Use `budget`, shared with other layers or retriers (for example every client of
        /// one upstream), instead of creating one; the `budget` configuration is then only
        /// validated.
        pub fn budget(mut self, budget: RetryBudget) -> Self {
            self.settings.budget = Some(budget);
            self
        }

        /// The random source of the jitter. Default `fastrand`'s thread-local generator.
        pub fn random(mut self, random: impl RandomSource + 'static) -> Self {
            self.settings.random = Some(Random(Arc::new(random)));
            self
        }

        /// The configuration built so far.
        pub fn config(&self) -> &RetryConfig {
            &self.settings.config
        }
    };
}

pub(crate) use common_setters;

/// Builds a [`RetryLayer`]; every setter documents its default.
#[must_use]
pub struct RetryBuilder<C = AllErrors> {
    settings: Settings,
    classify: C,
}

impl<C> fmt::Debug for RetryBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("config", &self.settings.config)
            .finish_non_exhaustive()
    }
}

impl<C> RetryBuilder<C> {
    common_setters!();

    /// The response statuses retried (5xx, or 408, 409, 425, 429). Default 429, 502, 503, 504.
    pub fn retry_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.settings.config.retry_statuses = statuses.into_iter().collect();
        self
    }

    /// The largest request body buffered for replay, in bytes. Default 64 KiB.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.settings.config.max_replay_body = bytes;
        self
    }

    /// Which service errors are retried: an `Fn(&Error) -> bool` or any
    /// [`ClassifyError`](crate::ClassifyError). Default: every error ([`AllErrors`]).
    pub fn classify_errors<C2>(self, classify: C2) -> RetryBuilder<C2> {
        RetryBuilder {
            settings: self.settings,
            classify,
        }
    }

    /// Validates and builds the layer (and registers its metrics).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the invalid field (see [`RetryConfig::validate`]).
    pub fn build(self) -> Result<RetryLayer<C>, ConfigError> {
        Ok(RetryLayer {
            policy: Arc::new(self.settings.build()?),
            classify: self.classify,
        })
    }
}
