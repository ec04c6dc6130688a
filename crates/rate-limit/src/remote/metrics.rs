//! The Redis backend's metric handles, registered when the layer is built.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::metrics::{
    BACKEND_STATE, REDIS_CALL_DURATION, REDIS_CALLS, REDIS_FALLBACKS, REDIS_LEASE_HITS,
};

/// How one Redis call ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Ok,
    Error,
    Timeout,
}

pub(crate) struct RedisMetrics {
    pub(crate) state: Gauge,
    pub(crate) fallbacks: Counter,
    ok: Counter,
    error: Counter,
    timeout: Counter,
    duration: Histogram,
    lease_admitted: Counter,
    lease_refused: Counter,
}

impl RedisMetrics {
    pub(crate) fn new() -> Self {
        crate::metrics::describe_redis();
        let calls = |outcome: &'static str| counter!(REDIS_CALLS, "outcome" => outcome);
        let hits = |outcome: &'static str| counter!(REDIS_LEASE_HITS, "outcome" => outcome);
        Self {
            state: gauge!(BACKEND_STATE, "backend" => "redis"),
            fallbacks: counter!(REDIS_FALLBACKS),
            ok: calls("ok"),
            error: calls("error"),
            timeout: calls("timeout"),
            duration: histogram!(REDIS_CALL_DURATION),
            lease_admitted: hits("admitted"),
            lease_refused: hits("refused"),
        }
    }

    pub(crate) fn call(&self, outcome: Call, elapsed: Duration) {
        match outcome {
            Call::Ok => self.ok.increment(1),
            Call::Error => self.error.increment(1),
            Call::Timeout => self.timeout.increment(1),
        }
        self.duration.record(elapsed.as_secs_f64());
    }

    pub(crate) fn lease_hit(&self, admitted: bool) {
        if admitted {
            self.lease_admitted.increment(1);
        } else {
            self.lease_refused.increment(1);
        }
    }
}
