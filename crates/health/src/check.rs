//! Checks: the [`HealthCheck`] trait, closures, and [`Check`], a check with its name, timeout,
//! schedule and criticality.

use std::{borrow::Cow, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use palisade_core::ConfigError;

use crate::status::{CheckResult, IntoCheckResult};

/// A boxed check run.
pub(crate) type BoxCheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// A health check written as a type.
///
/// Implement it with an `async fn`; the future must be `Send`. The check is run in its own task,
/// under its timeout, with panics caught: a check that hangs or panics counts as failed and never
/// hangs a probe.
///
/// ```
/// use palisade_health::{CheckResult, HealthCheck};
///
/// struct DiskSpace { min_free_bytes: u64 }
///
/// impl HealthCheck for DiskSpace {
///     async fn check(&self) -> CheckResult {
///         let free = 10 * 1024 * 1024 * 1024_u64; // statvfs(...) in real code
///         if free >= self.min_free_bytes {
///             CheckResult::pass()
///         } else {
///             CheckResult::fail(format!("{free} bytes free"))
///         }
///     }
/// }
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// One run of the check.
    fn check(&self) -> impl Future<Output = CheckResult> + Send;
}

/// Object-safe form of [`HealthCheck`], owning the check for the length of a run.
pub(crate) trait DynCheck: Send + Sync + 'static {
    fn run(self: Arc<Self>) -> BoxCheckFuture;
}

impl<T: HealthCheck> DynCheck for T {
    fn run(self: Arc<Self>) -> BoxCheckFuture {
        // The user's code is called inside the future, so a panic while creating its future is
        // caught like a panic while polling it.
        Box::pin(async move { self.check().await })
    }
}

/// A check made from a closure returning a future; see [`Check::from_fn`].
#[derive(Clone)]
pub struct FnCheck<F>(F);

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnCheck")
    }
}

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoCheckResult,
{
    fn check(&self) -> impl Future<Output = CheckResult> + Send {
        let run = (self.0)();
        async move { run.await.into_check_result() }
    }
}

/// When a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
pub enum Schedule {
    /// In a background task every `period` (the first run at once); probes read the last
    /// result and never wait, except for the very first run. A result older than
    /// `2 × period + timeout` (the task is stuck or gone) counts as failed.
    Background {
        /// Time between the starts of two runs.
        #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
        period: Duration,
    },
    /// When a probe needs it: the result is cached for `ttl` after the run ends, and concurrent
    /// probes share one run (single flight). A `ttl` of zero still shares runs between
    /// concurrent probes.
    OnDemand {
        /// How long a result is reused.
        #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
        ttl: Duration,
    },
}

impl Default for Schedule {
    fn default() -> Self {
        Self::Background {
            period: DEFAULT_PERIOD,
        }
    }
}

/// Default time limit of one check run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default period of background checks.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);

/// Names the probes report themselves, which checks cannot use.
pub const RESERVED_NAMES: [&str; 2] = ["lifecycle", "overload"];

/// A check with its name, timeout, schedule and criticality, ready to register with
/// [`HealthBuilder::readiness_check`](crate::HealthBuilder::readiness_check) or
/// [`HealthBuilder::liveness_check`](crate::HealthBuilder::liveness_check).
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `timeout` | 500 ms | a run taking longer is cancelled and counts as `fail` |
/// | schedule | background, every 5 s | or on demand with a TTL cache and single flight |
/// | `critical` | true | a failing non-critical check makes the probe `warn` (200), not `fail` (503) |
///
/// ```
/// use std::time::Duration;
/// use palisade_health::Check;
///
/// let db = Check::from_fn("postgres", || async {
///     // pool.execute("SELECT 1").await
///     Ok::<(), std::io::Error>(())
/// })
/// .timeout(Duration::from_millis(300))
/// .on_demand(Duration::from_secs(2));
/// assert_eq!(db.name(), "postgres");
/// ```
#[derive(Clone)]
#[must_use]
pub struct Check {
    pub(crate) name: Cow<'static, str>,
    pub(crate) implementation: Arc<dyn DynCheck>,
    pub(crate) timeout: Duration,
    pub(crate) schedule: Schedule,
    pub(crate) critical: bool,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("schedule", &self.schedule)
            .field("critical", &self.critical)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// A check from a [`HealthCheck`] implementation.
    pub fn new(name: impl Into<Cow<'static, str>>, check: impl HealthCheck) -> Self {
        Self {
            name: name.into(),
            implementation: Arc::new(check),
            timeout: DEFAULT_TIMEOUT,
            schedule: Schedule::default(),
            critical: true,
        }
    }

    /// A check from a closure returning a future whose output converts with
    /// [`IntoCheckResult`](crate::IntoCheckResult) (`Result<_, impl Display>`, `bool`,
    /// [`CheckResult`], [`Status`](crate::Status)).
    ///
    /// Clone what the check needs into the closure, and again into each future:
    /// `move || { let pool = pool.clone(); async move { pool.ping().await } }`.
    pub fn from_fn<F, Fut>(name: impl Into<Cow<'static, str>>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoCheckResult,
    {
        Self::new(name, FnCheck(check))
    }

    /// The time limit of one run. Default 500 ms; keep it below the probe's `timeoutSeconds`
    /// when the check runs on demand.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs in the background every `period`. This is the default (every 5 s).
    pub fn every(mut self, period: Duration) -> Self {
        self.schedule = Schedule::Background { period };
        self
    }

    /// Runs when a probe needs it, caching the result for `ttl`, with single flight.
    pub fn on_demand(mut self, ttl: Duration) -> Self {
        self.schedule = Schedule::OnDemand { ttl };
        self
    }

    /// Sets the schedule.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Whether a failure fails the probe (`true`, the default) or only makes it `warn`.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Short for `critical(false)`: a failure is reported (`warn`, 200) but does not take the
    /// instance out of rotation. The observe-only mode of a check.
    pub fn non_critical(self) -> Self {
        self.critical(false)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time limit of one run.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The schedule.
    pub fn get_schedule(&self) -> Schedule {
        self.schedule
    }

    /// Whether a failure fails the probe.
    pub fn is_critical(&self) -> bool {
        self.critical
    }

    /// Checks the name, timeout and schedule.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a name that is empty, longer than 64 bytes, not made of
    /// `[A-Za-z0-9_.:-]` or reserved (`lifecycle`, `overload`), a zero timeout, or a zero period.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = || format!("checks.{}", self.name);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if !name_ok {
            return Err(ConfigError::new(
                "checks.name",
                format!(
                    "{:?} must be 1 to 64 characters of [A-Za-z0-9_.:-]",
                    self.name
                ),
            ));
        }
        if RESERVED_NAMES.contains(&self.name.as_ref()) {
            return Err(ConfigError::new(
                "checks.name",
                format!("{:?} is reported by the probes themselves", self.name),
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                format!("{}.timeout", key()),
                "must be above zero",
            ));
        }
        if let Schedule::Background { period } = self.schedule
            && period.is_zero()
        {
            return Err(ConfigError::new(
                format!("{}.period", key()),
                "must be above zero",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn defaults() {
        let check = Check::from_fn("db", || async { true });
        assert_eq!(check.get_timeout(), Duration::from_millis(500));
        assert_eq!(
            check.get_schedule(),
            Schedule::Background {
                period: Duration::from_secs(5)
            }
        );
        assert!(check.is_critical());
        assert!(!check.clone().non_critical().is_critical());
        assert!(check.validate().is_ok());
        assert!(format!("{check:?}").contains("\"db\""));
    }

    #[test]
    fn nonsense_is_an_error_naming_the_field() {
        let ok = || Check::from_fn("db:ping", || async { Status::Pass });
        let key = |c: Check| c.validate().unwrap_err().key().to_owned();
        assert_eq!(key(Check::from_fn("", || async { true })), "checks.name");
        assert_eq!(key(Check::from_fn("a b", || async { true })), "checks.name");
        assert_eq!(
            key(Check::from_fn("x".repeat(65), || async { true })),
            "checks.name"
        );
        assert_eq!(
            key(Check::from_fn("overload", || async { true })),
            "checks.name"
        );
        assert_eq!(key(ok().timeout(Duration::ZERO)), "checks.db:ping.timeout");
        assert_eq!(key(ok().every(Duration::ZERO)), "checks.db:ping.period");
        assert!(ok().on_demand(Duration::ZERO).validate().is_ok());
    }
}
