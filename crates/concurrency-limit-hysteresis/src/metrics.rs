//! Metric names and handles. Handles are registered once when a limiter is built, so the
//! per-request cost is an atomic store; install the metrics recorder (exporter) before building
//! layers.

use metrics::{Counter, Gauge, Unit, describe_counter, describe_gauge};
use palisade_core::EnforcementMode;

use crate::hysteresis::RejectReason;

/// Requests in flight, per limiter (`limiter` label).
pub const IN_FLIGHT: &str = "palisade_concurrency_in_flight";
/// Request limiter state: 0 accepting, 1 shedding.
pub const STATE: &str = "palisade_concurrency_state";
/// Requests refused, by `limiter`, `reason` (`shedding`, `at_maximum`) and `mode` (`enforce`,
/// `observe_only`: what observe-only mode would have refused).
pub const REJECTED: &str = "palisade_concurrency_rejected_total";
/// Open connections, per listener (`listener` label).
pub const CONNECTIONS_OPEN: &str = "palisade_connections_open";
/// Connection limiter state: 0 accepting, 1 refusing.
pub const CONNECTIONS_STATE: &str = "palisade_connections_state";
/// Connections refused, by `listener`, `reason` and `mode`.
pub const CONNECTIONS_REJECTED: &str = "palisade_connections_rejected_total";
/// The request limiter's marks, by `limiter` and `bound` (`max`, `high_water`, `low_water`):
/// constant, for plotting in-flight against the limits.
pub const LIMIT: &str = "palisade_concurrency_limit";
/// The connection limiter's marks, by `listener` and `bound`.
pub const CONNECTIONS_LIMIT: &str = "palisade_connections_limit";

/// Which limiter a [`Metrics`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Requests,
    Connections,
}

impl Kind {
    fn names(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Requests => ("limiter", IN_FLIGHT, STATE, REJECTED),
            Self::Connections => (
                "listener",
                CONNECTIONS_OPEN,
                CONNECTIONS_STATE,
                CONNECTIONS_REJECTED,
            ),
        }
    }

    fn limit(self) -> &'static str {
        match self {
            Self::Requests => LIMIT,
            Self::Connections => CONNECTIONS_LIMIT,
        }
    }

    /// What the limiter counts, for log messages.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::Requests => "requests in flight",
            Self::Connections => "open connections",
        }
    }
}

pub(crate) struct Metrics {
    pub(crate) count: Gauge,
    pub(crate) state: Gauge,
    shedding: Counter,
    at_maximum: Counter,
}

impl Metrics {
    pub(crate) fn new(
        kind: Kind,
        name: &str,
        mode: EnforcementMode,
        thresholds: &crate::Thresholds,
    ) -> Self {
        describe(kind);
        let (label, count, state, rejected) = kind.names();
        let name = name.to_owned();
        for (bound, value) in [
            ("max", thresholds.max),
            ("high_water", thresholds.high),
            ("low_water", thresholds.low),
        ] {
            metrics::gauge!(kind.limit(), label => name.clone(), "bound" => bound).set(value);
        }
        let mode = mode.label();
        let rejected_for = |reason: RejectReason| metrics::counter!(rejected, label => name.clone(), "reason" => reason.as_str(), "mode" => mode);
        Self {
            count: metrics::gauge!(count, label => name.clone()),
            state: metrics::gauge!(state, label => name.clone()),
            shedding: rejected_for(RejectReason::Shedding),
            at_maximum: rejected_for(RejectReason::AtMaximum),
        }
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        match reason {
            RejectReason::Shedding => self.shedding.increment(1),
            RejectReason::AtMaximum => self.at_maximum.increment(1),
        }
    }
}

fn describe(kind: Kind) {
    match kind {
        Kind::Requests => {
            describe_gauge!(
                IN_FLIGHT,
                Unit::Count,
                "Requests in flight, held until the response body ends."
            );
            describe_gauge!(STATE, "Concurrency limiter state: 0 accepting, 1 shedding.");
            describe_gauge!(
                LIMIT,
                Unit::Count,
                "The concurrency limiter's marks: max, high_water (shedding starts), low_water (shedding stops)."
            );
            describe_counter!(
                REJECTED,
                Unit::Count,
                "Requests refused by the concurrency limiter."
            );
        }
        Kind::Connections => {
            describe_gauge!(
                CONNECTIONS_OPEN,
                Unit::Count,
                "Open connections counted by the connection limiter."
            );
            describe_gauge!(
                CONNECTIONS_LIMIT,
                Unit::Count,
                "The connection limiter's marks: max, high_water (refusing starts), low_water (refusing stops)."
            );
            describe_gauge!(
                CONNECTIONS_STATE,
                "Connection limiter state: 0 accepting, 1 refusing."
            );
            describe_counter!(
                CONNECTIONS_REJECTED,
                Unit::Count,
                "Connections refused by the connection limiter."
            );
        }
    }
}
