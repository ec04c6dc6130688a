//! Metric names and handles. The handle is registered once when the layer is built, so counting
//! a timeout is one atomic add with no label formatting; install the metrics recorder (exporter)
//! before building the layer.

use metrics::{Counter, Unit, describe_counter};
use palisade_core::EnforcementMode;

/// Requests whose response had not started when their timeout passed, by `mode` (`enforce`:
/// answered with the configured status; `observe_only`: counted, logged and left to finish).
pub const EXPIRED: &str = "palisade_timeout_expired_total";

pub(crate) struct Metrics {
    expired: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(mode: EnforcementMode) -> Self {
        describe_counter!(
            EXPIRED,
            Unit::Count,
            "Requests still without a response when their timeout passed (mode=observe_only: counted but left to finish)."
        );
        Self {
            expired: metrics::counter!(EXPIRED, "mode" => mode.label()),
        }
    }

    pub(crate) fn expired(&self) {
        self.expired.increment(1);
    }
}
