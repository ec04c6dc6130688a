//! [`Policy`]: one validated quota, as the layer and backends see it.

use std::{fmt, sync::Arc, time::Duration};

use crate::gcra::Gcra;

/// A validated, named quota: `rate` requests per `period`, bursts of up to `burst`.
///
/// Built by the layer from a [`PolicyConfig`](crate::PolicyConfig); backends read it to know
/// what to enforce.
#[derive(Clone)]
pub struct Policy {
    name: Arc<str>,
    rate: u32,
    period: Duration,
    burst: u32,
    pub(crate) gcra: Gcra,
}

impl Policy {
    pub(crate) fn new(name: &str, rate: u32, period: Duration, burst: u32) -> Self {
        Self {
            name: name.into(),
            rate,
            period,
            burst,
            gcra: Gcra::new(rate, period, burst),
        }
    }

    /// The policy's name: the `policy` metric label and the name in the `RateLimit` fields.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests per period.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The most requests admitted at once from a fresh key.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval: one request per `period / rate`.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.gcra.interval())
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}
