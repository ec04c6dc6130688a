//! Metric names and handles. Handles are registered once when the layer is built, so counting a
//! refusal is one atomic add with no label formatting; install the metrics recorder (exporter)
//! before building the layer.

use metrics::{Counter, Unit, describe_counter};
use palisade_core::EnforcementMode;

use crate::reason::Reason;

/// Requests refused, by `reason` ([`Reason::as_str`]) and `mode` (`enforce`, or `observe_only`:
/// counted and logged, but served).
pub const REJECTED: &str = "palisade_request_guard_rejected_total";

pub(crate) struct Metrics {
    /// One counter per reason, indexed by [`Reason::index`].
    rejected: Box<[Counter]>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(mode: EnforcementMode) -> Self {
        describe_counter!(
            REJECTED,
            Unit::Count,
            "Requests refused by the request guard, by reason (mode=observe_only: counted but served)."
        );
        let mode = mode.label();
        let rejected = Reason::ALL
            .into_iter()
            .map(|reason| metrics::counter!(REJECTED, "reason" => reason.as_str(), "mode" => mode))
            .collect();
        Self { rejected }
    }

    pub(crate) fn rejected(&self, reason: Reason) {
        self.rejected[reason.index()].increment(1);
    }
}
