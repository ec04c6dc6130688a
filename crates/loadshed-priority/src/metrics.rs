//! Metric names and handles, registered once when the layer is built.

use metrics::{Counter, Gauge, Unit, describe_counter, describe_gauge};
use palisade_core::Priority;

/// Requests seen, by `priority` and `outcome` (`admitted`, `shed`, or `shed_observed`: what
/// observe-only mode would have shed).
pub const REQUESTS: &str = "palisade_loadshed_requests_total";
/// The overload level the last decision used, in `[0, 1]`.
pub const LEVEL: &str = "palisade_loadshed_level";

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Admitted,
    Shed,
    ShedObserved,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Self::Admitted, Self::Shed, Self::ShedObserved];

    fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Shed => "shed",
            Self::ShedObserved => "shed_observed",
        }
    }
}

pub(crate) struct Metrics {
    requests: [[Counter; 3]; 4],
    pub(crate) level: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        describe_counter!(
            REQUESTS,
            Unit::Count,
            "Requests seen by the priority load shedder, by class and outcome."
        );
        describe_gauge!(
            LEVEL,
            "Overload level used by the priority load shedder, 0 to 1."
        );
        Self {
            requests: Priority::ALL.map(|p| {
                Outcome::ALL.map(|o| metrics::counter!(REQUESTS, "priority" => p.as_str(), "outcome" => o.as_str()))
            }),
            level: metrics::gauge!(LEVEL),
        }
    }

    pub(crate) fn record(&self, priority: Priority, outcome: Outcome) {
        self.requests[priority as usize][outcome as usize].increment(1);
    }
}
