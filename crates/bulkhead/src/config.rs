//! Configuration: plain data with documented defaults, a builder, and validation.

use std::{borrow::Cow, time::Duration};

use palisade_core::{ConfigError, EnforcementMode, RetryAfter};

/// The largest `max_concurrent` and `max_queued` a bulkhead accepts.
pub const MAX_LIMIT: u32 = 1 << 30;

/// The longest `max_wait` a bulkhead accepts (one hour): a longer wait is a hung request.
pub const MAX_WAIT_LIMIT: Duration = Duration::from_secs(3600);

/// Configuration of one named bulkhead ([`BulkheadLayer`](crate::BulkheadLayer)).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | `default` | the `bulkhead` label of its metrics and rejections; the registry key |
/// | `max_concurrent` | 100 | slots: requests running at once; never exceeded while enforcing |
/// | `max_queued` | 100 | requests that may wait for a slot; beyond, rejected at once (`queue_full`) |
/// | `max_wait` | 1 s | the longest a request waits for a slot (`wait_timeout`); 0 = never wait |
/// | `priority_ordering` | false | serve waiters by [`Priority`](palisade_core::Priority) first, FIFO within a class; a full queue evicts its lowest class for a higher one |
/// | `retry_after` | 1 s | `Retry-After` on rejections (rounded up, at least 1 s) |
/// | `retry_after_jitter` | 0 s | random extra delay added to `Retry-After` |
/// | `mode` | enforce | `ObserveOnly` counts what it would reject but never waits or rejects |
///
/// `max_queued = 0` or `max_wait = 0` means: reject at once when every slot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// The name in metric labels, rejections, logs and the registry.
    pub name: Cow<'static, str>,
    /// Slots: requests running at once.
    pub max_concurrent: u32,
    /// Requests that may wait for a slot.
    pub max_queued: u32,
    /// The longest a request may wait for a slot.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub max_wait: Duration,
    /// Serve waiting requests in [`Priority`](palisade_core::Priority) order (highest first), FIFO
    /// within a class. When false, one FIFO queue for all.
    ///
    /// It also decides who keeps a place in a full queue. When the queue is full and a request of
    /// a higher class than the lowest waiter arrives, it takes the place of the lowest-class, most
    /// recently queued waiter, which is answered at once with `503` (reason
    /// `bulkhead_queue_full`, counted as `queue_full`): critical requests are not turned away
    /// while sheddable ones hold queue places. A request of the same or a lower class is refused
    /// as usual. In FIFO mode (false) a full queue always refuses the newcomer.
    pub priority_ordering: bool,
    /// `Retry-After` on rejections.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after: Duration,
    /// Random extra `Retry-After`, so rejected clients do not return in lockstep.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after_jitter: Duration,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            max_concurrent: 100,
            max_queued: 100,
            max_wait: Duration::from_secs(1),
            priority_ordering: false,
            retry_after: Duration::from_secs(1),
            retry_after_jitter: Duration::ZERO,
            mode: EnforcementMode::Enforce,
        }
    }
}

impl BulkheadConfig {
    /// A default configuration named `name`.
    pub fn named(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: an empty or over-long name (1 to 64 characters of
    /// `[A-Za-z0-9_.-]`), zero or too many slots, too long a queue, a wait above one hour, or a
    /// retry delay above one day.
    pub fn validate(&self) -> Result<(), ConfigError> {
        palisade_core::check_name(&self.name)?;
        if self.max_concurrent == 0 {
            return Err(ConfigError::new("max_concurrent", "must be at least 1"));
        }
        if self.max_concurrent > MAX_LIMIT {
            return Err(ConfigError::new(
                "max_concurrent",
                format!("must be at most {MAX_LIMIT}"),
            ));
        }
        if self.max_queued > MAX_LIMIT {
            return Err(ConfigError::new(
                "max_queued",
                format!("must be at most {MAX_LIMIT}"),
            ));
        }
        if self.max_wait > MAX_WAIT_LIMIT {
            return Err(ConfigError::new("max_wait", "must be at most one hour"));
        }
        RetryAfter::checked(self.retry_after, self.retry_after_jitter)?;
        Ok(())
    }

    /// Whether a request that finds every slot taken may wait at all.
    pub(crate) fn queues(&self) -> bool {
        self.max_queued > 0 && !self.max_wait.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = BulkheadConfig::default();
        config.validate().unwrap();
        assert_eq!(config.max_concurrent, 100);
        assert!(config.queues());
        assert!(BulkheadConfig::named("api").validate().is_ok());
    }

    #[test]
    fn nonsense_is_an_error_naming_the_field() {
        let key = |c: BulkheadConfig| c.validate().unwrap_err().key().to_owned();
        let d = BulkheadConfig::default;
        assert_eq!(
            key(BulkheadConfig {
                name: "".into(),
                ..d()
            }),
            "name"
        );
        assert_eq!(
            key(BulkheadConfig {
                name: "has space".into(),
                ..d()
            }),
            "name"
        );
        assert_eq!(
            key(BulkheadConfig {
                max_concurrent: 0,
                ..d()
            }),
            "max_concurrent"
        );
        assert_eq!(
            key(BulkheadConfig {
                max_concurrent: MAX_LIMIT + 1,
                ..d()
            }),
            "max_concurrent"
        );
        assert_eq!(
            key(BulkheadConfig {
                max_queued: MAX_LIMIT + 1,
                ..d()
            }),
            "max_queued"
        );
        assert_eq!(
            key(BulkheadConfig {
                max_wait: Duration::from_secs(3601),
                ..d()
            }),
            "max_wait"
        );
        assert_eq!(
            key(BulkheadConfig {
                retry_after: Duration::from_secs(100_000),
                ..d()
            }),
            "retry_after"
        );
    }

    #[test]
    fn zero_queue_or_zero_wait_means_reject_at_once() {
        let no_queue = BulkheadConfig {
            max_queued: 0,
            ..Default::default()
        };
        assert!(no_queue.validate().is_ok() && !no_queue.queues());
        let no_wait = BulkheadConfig {
            max_wait: Duration::ZERO,
            ..Default::default()
        };
        assert!(no_wait.validate().is_ok() && !no_wait.queues());
    }
}
