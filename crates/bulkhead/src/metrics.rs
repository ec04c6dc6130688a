//! Metric names and handles. Handles are registered once when a bulkhead is built, so the
//! per-request cost is an atomic store; install the metrics recorder (exporter) before building
//! bulkheads.

use metrics::{
    Counter, Gauge, Histogram, Unit, describe_counter, describe_gauge, describe_histogram,
};
use palisade_core::EnforcementMode;

use crate::RejectReason;

/// Requests holding a slot (until their response body ends), by `bulkhead`.
pub const IN_FLIGHT: &str = "palisade_bulkhead_in_flight";
/// Requests waiting for a slot, by `bulkhead`.
pub const QUEUED: &str = "palisade_bulkhead_queued";
/// Requests refused, by `bulkhead`, `reason` (`queue_full`, `wait_timeout`) and `mode`
/// (`enforce`, or `observe_only`: what observe-only mode would have refused). `queue_full` includes
/// waiters evicted from a full queue by a higher class (priority ordering).
pub const REJECTED: &str = "palisade_bulkhead_rejected_total";
/// Time spent waiting for a slot by requests that had to wait (admitted, timed out, or evicted by
/// a higher class), by `bulkhead`. Requests admitted at once and cancelled waiters are not
/// recorded.
pub const WAIT_SECONDS: &str = "palisade_bulkhead_wait_seconds";

pub(crate) struct Metrics {
    pub(crate) in_flight: Gauge,
    pub(crate) queued: Gauge,
    pub(crate) wait: Histogram,
    queue_full: Counter,
    wait_timeout: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &str, mode: EnforcementMode) -> Self {
        describe();
        let name = name.to_owned();
        let mode = mode.label();
        let rejected_for = |reason: RejectReason| metrics::counter!(REJECTED, "bulkhead" => name.clone(), "reason" => reason.as_str(), "mode" => mode);
        Self {
            in_flight: metrics::gauge!(IN_FLIGHT, "bulkhead" => name.clone()),
            queued: metrics::gauge!(QUEUED, "bulkhead" => name.clone()),
            wait: metrics::histogram!(WAIT_SECONDS, "bulkhead" => name.clone()),
            queue_full: rejected_for(RejectReason::QueueFull),
            wait_timeout: rejected_for(RejectReason::WaitTimeout),
        }
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        match reason {
            RejectReason::QueueFull => self.queue_full.increment(1),
            RejectReason::WaitTimeout => self.wait_timeout.increment(1),
        }
    }
}

fn describe() {
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Requests holding a bulkhead slot, until the response body ends."
    );
    describe_gauge!(QUEUED, Unit::Count, "Requests waiting for a bulkhead slot.");
    describe_counter!(REJECTED, Unit::Count, "Requests refused by a bulkhead.");
    describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "Time requests waited for a bulkhead slot."
    );
}
