//! Metric names and handles. Handles are registered once when the layer is built, so counting a
//! refusal is one atomic add with no label formatting; install the metrics recorder (exporter)
//! before building the layer.

use metrics::{Counter, Unit, describe_counter};
use palisade_core::EnforcementMode;

use crate::reason::Reason;

/// Requests refused, by `reason` ([`Reason::as_str`]); in observe-only mode the reason carries an
/// `_observed` suffix (`dot_segment_observed`): counted and logged, but served.
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
            "Requests refused by the request guard, by reason (suffixed _observed when observe-only mode served them)."
        );
        let rejected = Reason::ALL
            .into_iter()
            .map(|reason| {
                let label = if mode.enforces() {
                    reason.as_str()
                } else {
                    reason.observed_label()
                };
                metrics::counter!(REJECTED, "reason" => label)
            })
            .collect();
        Self { rejected }
    }

    pub(crate) fn rejected(&self, reason: Reason) {
        self.rejected[reason.index()].increment(1);
    }
}
