//! Metric names and handles, registered once when the layer is built.

use metrics::{Counter, Gauge, Unit, describe_counter, describe_gauge};
use palisade_core::{EnforcementMode, Priority};

/// Requests seen, by `priority`, `outcome` (`admitted` or `shed`) and `mode` (`enforce`, or
/// `observe_only`: `shed` then counts what observe-only mode would have shed, and served).
pub const REQUESTS: &str = "palisade_loadshed_requests_total";
/// The overload level the last decision used, in `[0, 1]`.
pub const LEVEL: &str = "palisade_loadshed_level";

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Admitted,
    Shed,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Self::Admitted, Self::Shed];

    fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Shed => "shed",
        }
    }
}

pub(crate) struct Metrics {
    requests: [[Counter; 2]; 4],
    pub(crate) level: Gauge,
}

impl Metrics {
    pub(crate) fn new(mode: EnforcementMode) -> Self {
        describe_counter!(
            REQUESTS,
            Unit::Count,
            "Requests seen by the priority load shedder, by class and outcome."
        );
        describe_gauge!(
            LEVEL,
            "Overload level used by the priority load shedder, 0 to 1."
        );
        let mode = mode.label();
        Self {
            requests: Priority::ALL.map(|p| {
                Outcome::ALL.map(|o| metrics::counter!(REQUESTS, "priority" => p.as_str(), "outcome" => o.as_str(), "mode" => mode))
            }),
            level: metrics::gauge!(LEVEL),
        }
    }

    pub(crate) fn record(&self, priority: Priority, outcome: Outcome) {
        self.requests[priority as usize][outcome as usize].increment(1);
    }
}
