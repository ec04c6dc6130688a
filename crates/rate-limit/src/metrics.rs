//! Metric names and handles. Handles are registered once, when the layer is built, so a request
//! costs an atomic increment; install the metrics recorder (exporter) before building layers.
//! Labels are the policy name and a fixed outcome, never a key.

use metrics::{Counter, Gauge, Unit, counter, describe_counter, describe_gauge, gauge};
use palisade_core::EnforcementMode;

/// Requests checked, by `policy`, `outcome` and `mode`: `admitted`, `limited` (refused by this
/// policy; with `mode="observe_only"`, would have been refused and was served), `backend_error`
/// (the backend failed; served), `unavailable` (the backend fails closed and could not decide;
/// refused with 503).
pub const REQUESTS: &str = "palisade_rate_limit_requests_total";
/// Where the limits are decided, by `backend`: 0 shared, 1 failing open (each replica at its
/// local share), 2 failing closed (503).
pub const BACKEND_STATE: &str = "palisade_rate_limit_backend_state";
/// Calls to Redis, by `outcome`: `ok`, `error`, `timeout` (the deadline passed).
pub const REDIS_CALLS: &str = "palisade_rate_limit_redis_calls_total";
/// The time of each Redis call (a timed-out call records the deadline).
pub const REDIS_CALL_DURATION: &str = "palisade_rate_limit_redis_call_duration_seconds";
/// Requests decided locally without Redis while it was unreachable (or late).
pub const REDIS_FALLBACKS: &str = "palisade_rate_limit_redis_fallbacks_total";
/// Requests decided from a lease without a Redis call, by `outcome`: `admitted` (a reserved
/// request spent), `refused` (a refusal remembered).
pub const REDIS_LEASE_HITS: &str = "palisade_rate_limit_redis_lease_hits_total";
/// Keys held by the in-memory store, by `policy`.
pub const KEYS: &str = "palisade_rate_limit_keys";
/// Keys dropped by the in-memory store, by `policy` and `reason`: `idle` (its bucket was full
/// again: no decision changes) or `capacity` (the cap was reached with every key live).
pub const EVICTIONS: &str = "palisade_rate_limit_evictions_total";

pub(crate) fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests checked by a rate-limit policy, by outcome."
    );
    describe_gauge!(
        KEYS,
        Unit::Count,
        "Keys held by a rate-limit policy's in-memory store."
    );
    describe_counter!(
        EVICTIONS,
        Unit::Count,
        "Keys dropped by a rate-limit policy's in-memory store, by reason."
    );
}

#[cfg(feature = "redis")]
pub(crate) fn describe_redis() {
    use metrics::describe_histogram;
    describe_gauge!(
        BACKEND_STATE,
        Unit::Count,
        "Where rate limits are decided: 0 shared, 1 failing open to a local share, 2 failing closed."
    );
    describe_counter!(
        REDIS_CALLS,
        Unit::Count,
        "Calls to the rate-limit Redis, by outcome."
    );
    describe_histogram!(
        REDIS_CALL_DURATION,
        Unit::Seconds,
        "The time of each call to the rate-limit Redis."
    );
    describe_counter!(
        REDIS_FALLBACKS,
        Unit::Count,
        "Requests rate-limited locally because Redis was unreachable or late."
    );
    describe_counter!(
        REDIS_LEASE_HITS,
        Unit::Count,
        "Requests decided from a lease without a Redis call, by outcome."
    );
}

/// The request counters of one policy.
#[derive(Debug, Clone)]
pub(crate) struct PolicyMetrics {
    pub(crate) admitted: Counter,
    pub(crate) limited: Counter,
    pub(crate) limited_observed: Counter,
    pub(crate) backend_error: Counter,
    pub(crate) unavailable: Counter,
}

impl PolicyMetrics {
    pub(crate) fn new(policy: &str, mode: EnforcementMode) -> Self {
        let mode = mode.label();
        let outcome = |outcome: &'static str, mode: &'static str| counter!(REQUESTS, "policy" => policy.to_owned(), "outcome" => outcome, "mode" => mode);
        Self {
            admitted: outcome("admitted", mode),
            limited: outcome("limited", mode),
            // Counted only in observe-only mode, which never refuses.
            limited_observed: outcome("limited", EnforcementMode::ObserveOnly.label()),
            backend_error: outcome("backend_error", mode),
            unavailable: outcome("unavailable", mode),
        }
    }
}

/// The store metrics of one policy.
#[derive(Debug, Clone)]
pub(crate) struct StoreMetrics {
    pub(crate) keys: Gauge,
    pub(crate) evicted_idle: Counter,
    pub(crate) evicted_capacity: Counter,
}

impl StoreMetrics {
    pub(crate) fn new(policy: &str) -> Self {
        Self {
            keys: gauge!(KEYS, "policy" => policy.to_owned()),
            evicted_idle: counter!(EVICTIONS, "policy" => policy.to_owned(), "reason" => "idle"),
            evicted_capacity: counter!(
                EVICTIONS, "policy" => policy.to_owned(), "reason" => "capacity"
            ),
        }
    }

    #[cfg(test)]
    pub(crate) fn noop() -> Self {
        Self {
            keys: Gauge::noop(),
            evicted_idle: Counter::noop(),
            evicted_capacity: Counter::noop(),
        }
    }
}
