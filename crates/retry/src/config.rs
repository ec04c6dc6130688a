//! Configuration: plain data with documented defaults, and its validation.

use std::{borrow::Cow, time::Duration};

use palisade_core::{ConfigError, EnforcementMode, check_name};

/// The most attempts a request may make, the first included. gRPC clamps at 5; past a handful
/// more attempts only multiply the load on a dependency that is already failing.
pub const MAX_ATTEMPTS: u32 = 10;

/// The largest budget ratio: ten retries per request is already a storm.
pub const MAX_RATIO: f64 = 10.0;

/// The statuses retried by default: rate limited (429) and the three that mean "the upstream or
/// the hop before it could not answer" (502, 503, 504).
pub const DEFAULT_RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// The 4xx statuses that may be listed in `retry_statuses`. Every other 4xx says the request
/// itself is wrong (400, 403, 404, 416, ...): sending it again gets the same answer.
pub const RETRYABLE_CLIENT_ERRORS: [u16; 4] = [408, 409, 425, 429];

/// Configuration of [`RetryLayer`](crate::RetryLayer) and [`Retrier`](crate::Retrier).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | `default` | the `client` label of the metrics and spans |
/// | `mode` | enforce | `observe_only` decides and counts what would be retried, but never retries |
/// | `max_attempts` | 3 | attempts per request, the first included (1 to 10; 1 turns retries off) |
/// | `base_delay` | 0.1 s | backoff ceiling of the first retry; doubles each retry |
/// | `max_delay` | 0.4 s | cap of the backoff ceiling (full jitter: the sleep is uniform in `[0, ceiling)`) |
/// | `deadline` | 2 s | no attempt starts and no sleep ends later than this after the call began |
/// | `attempt_timeout` | none | time limit of each attempt (to its response headers) |
/// | `max_retry_after` | 1 s | the longest upstream `Retry-After` honoured; a longer one ends the retries |
/// | `retry_statuses` | 429, 502, 503, 504 | responses retried (5xx, or 408, 409, 425, 429) |
/// | `max_replay_body` | 65 536 | request bodies up to this many bytes are buffered for replay; larger ones are sent once |
/// | `hedge_after` | none | start a second attempt if the first has not answered after this long |
/// | `budget` | see [`BudgetConfig`] | how many retries the client may add to its traffic |
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RetryConfig {
    /// The `client` label of metrics and spans: 1 to 64 characters of `[A-Za-z0-9_.-]`.
    pub name: Cow<'static, str>,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub base_delay: Duration,
    /// The cap of the backoff ceiling.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub max_delay: Duration,
    /// The overall deadline of a call, retries and sleeps included.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub deadline: Duration,
    /// The time limit of each attempt; none by default.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "some_secs"))]
    pub attempt_timeout: Option<Duration>,
    /// The longest `Retry-After` that is honoured.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub max_retry_after: Duration,
    /// The response statuses that are retried.
    pub retry_statuses: Vec<u16>,
    /// The largest request body buffered for replay, in bytes (0: only requests without a body
    /// are retried).
    pub max_replay_body: usize,
    /// When to start a hedged second attempt; none (no hedging) by default.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "some_secs"))]
    pub hedge_after: Option<Duration>,
    /// The retry budget.
    pub budget: BudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            mode: EnforcementMode::Enforce,
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            deadline: Duration::from_secs(2),
            attempt_timeout: None,
            max_retry_after: Duration::from_secs(1),
            retry_statuses: DEFAULT_RETRY_STATUSES.to_vec(),
            max_replay_body: 64 * 1024,
            hedge_after: None,
            budget: BudgetConfig::default(),
        }
    }
}

impl RetryConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a bad name, zero or more than [`MAX_ATTEMPTS`]
    /// attempts, `base_delay` above `max_delay`, a zero deadline or timeout, a status that is not
    /// 5xx or one of [`RETRYABLE_CLIENT_ERRORS`], or a bad budget (see [`BudgetConfig::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name(&self.name)?;
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(ConfigError::new(
                "max_attempts",
                format!(
                    "{} must be 1 to {MAX_ATTEMPTS} (1: no retries)",
                    self.max_attempts
                ),
            ));
        }
        if self.base_delay > self.max_delay {
            return Err(ConfigError::new(
                "base_delay",
                format!(
                    "must not exceed max_delay ({:?} > {:?})",
                    self.base_delay, self.max_delay
                ),
            ));
        }
        if self.deadline.is_zero() {
            return Err(ConfigError::new("deadline", "must be above zero"));
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "attempt_timeout",
                "must be above zero (leave it out for no timeout)",
            ));
        }
        if self.hedge_after.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "hedge_after",
                "must be above zero (a zero delay doubles every request; leave it out for no hedging)",
            ));
        }
        for &status in &self.retry_statuses {
            let retryable =
                (500..=599).contains(&status) || RETRYABLE_CLIENT_ERRORS.contains(&status);
            if !retryable {
                return Err(ConfigError::new(
                    "retry_statuses",
                    format!(
                        "{status} is not retryable: list 5xx statuses or one of 408, 409, 425, 429 \
                         (other 4xx answers say the request itself is wrong)"
                    ),
                ));
            }
        }
        self.budget.validate().map_err(|e| e.within("budget"))
    }
}

/// Which requests share a retry budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum BudgetScope {
    /// One budget for every request of the client (the default): one client, one upstream.
    #[default]
    Global,
    /// One budget per upstream authority (`host:port` of the request URI), in a map bounded by
    /// `max_hosts`; a failing host cannot spend the retries of a healthy one.
    PerHost,
}

/// Configuration of a [`RetryBudget`](crate::RetryBudget): retries may add at most `ratio` of
/// the requests plus `min_per_second` to the traffic, over a sliding `window`.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `ratio` | 0.2 | retries allowed per request sent (0 to 10, exact to 10⁻⁶) |
/// | `min_per_second` | 10 | retries allowed per second whatever the traffic, so quiet clients can retry |
/// | `window` | 10 s | how long a request's deposit and a retry's withdrawal count (1 to 60 s, 10 buckets) |
/// | `scope` | global | one budget, or one per upstream host |
/// | `max_hosts` | 256 | per-host budgets kept; more hosts share one overflow budget |
/// | `refund_successful_retries` | true | a retry that succeeds gives its retry back |
///
/// The ratio, floor and window are Finagle's and tower's `TpsBudget` (20 %, 10/s, 10 s). The
/// refund is the AWS SDKs' retry quota's: the budget then bounds the retries that *fail*, which
/// is what a failing upstream receives on top of its traffic, while transient failures are
/// retried freely. Without it, a 20 % budget cannot cover an upstream that fails 20 % of
/// attempts (three attempts need about 25 % retries), and up to 2.4 % of calls fail that a
/// retry would have saved (`cargo xtask bench retry`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BudgetConfig {
    /// Retries allowed per request sent.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: f64,
    /// How long deposits and withdrawals count.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub window: Duration,
    /// One budget, or one per host.
    pub scope: BudgetScope,
    /// Per-host budgets kept at most.
    pub max_hosts: usize,
    /// Whether a retry that succeeds gives its retry back to the budget.
    pub refund_successful_retries: bool,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10.0,
            window: Duration::from_secs(10),
            scope: BudgetScope::Global,
            max_hosts: 256,
            refund_successful_retries: true,
        }
    }
}

impl BudgetConfig {
    /// Checks the budget.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a ratio outside `[0, 10]`, a negative or absurd
    /// floor, a window outside 1 to 60 s, or zero `max_hosts`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=MAX_RATIO).contains(&self.ratio) {
            return Err(ConfigError::new(
                "ratio",
                format!("{} must be in [0, {MAX_RATIO}]", self.ratio),
            ));
        }
        if !(0.0..=1e6).contains(&self.min_per_second) {
            return Err(ConfigError::new(
                "min_per_second",
                format!("{} must be in [0, 1000000]", self.min_per_second),
            ));
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "window",
                format!("{:?} must be 1 to 60 seconds", self.window),
            ));
        }
        if self.max_hosts == 0 {
            return Err(ConfigError::new("max_hosts", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
fn some_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    palisade_core::duration_secs::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(config: &RetryConfig) -> String {
        config.validate().unwrap_err().key().to_owned()
    }

    #[test]
    fn defaults_are_valid() {
        RetryConfig::default().validate().unwrap();
    }

    #[test]
    fn nonsense_is_refused_by_key() {
        type Change = Box<dyn Fn(&mut RetryConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.max_attempts = 0), "max_attempts"),
            (Box::new(|c| c.max_attempts = 11), "max_attempts"),
            (
                Box::new(|c| c.base_delay = Duration::from_secs(1)),
                "base_delay",
            ),
            (Box::new(|c| c.deadline = Duration::ZERO), "deadline"),
            (
                Box::new(|c| c.attempt_timeout = Some(Duration::ZERO)),
                "attempt_timeout",
            ),
            (
                Box::new(|c| c.hedge_after = Some(Duration::ZERO)),
                "hedge_after",
            ),
            (
                Box::new(|c| c.retry_statuses = vec![503, 404]),
                "retry_statuses",
            ),
            (Box::new(|c| c.retry_statuses = vec![200]), "retry_statuses"),
            (Box::new(|c| c.budget.ratio = -0.1), "budget.ratio"),
            (Box::new(|c| c.budget.ratio = 10.5), "budget.ratio"),
            (Box::new(|c| c.budget.ratio = f64::NAN), "budget.ratio"),
            (
                Box::new(|c| c.budget.min_per_second = f64::INFINITY),
                "budget.min_per_second",
            ),
            (
                Box::new(|c| c.budget.window = Duration::from_millis(500)),
                "budget.window",
            ),
            (
                Box::new(|c| c.budget.window = Duration::from_secs(61)),
                "budget.window",
            ),
            (Box::new(|c| c.budget.max_hosts = 0), "budget.max_hosts"),
            (Box::new(|c| c.name = "a b".into()), "name"),
        ];
        for (change, key) in cases {
            let mut config = RetryConfig::default();
            change(&mut config);
            assert_eq!(key_of(&config), key);
        }
    }

    #[test]
    fn edges_are_accepted() {
        let mut config = RetryConfig::default();
        config.max_attempts = 1;
        config.base_delay = config.max_delay;
        config.retry_statuses = vec![408, 409, 425, 429, 500, 599];
        config.budget.ratio = 10.0;
        config.budget.min_per_second = 0.0;
        config.budget.window = Duration::from_secs(60);
        config.validate().unwrap();
    }

    #[cfg(feature = "serde")]
    #[test]
    fn reads_seconds_and_nested_budget() {
        let config: RetryConfig = serde_json::from_str(
            r#"{"name": "payments", "max_attempts": 4, "base_delay": 0.05, "max_delay": 1,
                "attempt_timeout": 0.5, "hedge_after": 0.2, "mode": "observe_only",
                "retry_statuses": [503], "budget": {"ratio": 0.1, "scope": "per_host"}}"#,
        )
        .unwrap();
        assert_eq!(config.name, "payments");
        assert_eq!(config.max_attempts, 4);
        assert_eq!(config.base_delay, Duration::from_millis(50));
        assert_eq!(config.attempt_timeout, Some(Duration::from_millis(500)));
        assert_eq!(config.hedge_after, Some(Duration::from_millis(200)));
        assert_eq!(config.mode, EnforcementMode::ObserveOnly);
        assert_eq!(config.budget.scope, BudgetScope::PerHost);
        assert_eq!(
            config.budget,
            BudgetConfig {
                ratio: 0.1,
                scope: BudgetScope::PerHost,
                ..BudgetConfig::default()
            },
            "unset fields keep defaults"
        );
        assert_eq!(config.deadline, Duration::from_secs(2));
        config.validate().unwrap();
        assert!(serde_json::from_str::<RetryConfig>(r#"{"max_atempts": 4}"#).is_err());
    }
}
