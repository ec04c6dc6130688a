//! Metric names and handles. A breaker registers its handles once, when it is created, so
//! counting a call is one atomic increment (nothing at all without a recorder); install the
//! metrics recorder (exporter) before building breakers.

use metrics::{Counter, Gauge, Unit, describe_counter, describe_gauge};

use crate::machine::State;

/// The breaker's state, per `breaker`: 0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open,
/// 5 metrics only.
pub const STATE: &str = "palisade_circuit_breaker_state";
/// State changes, by `breaker`, `from` and `to` (state names such as `closed`, `half_open`).
pub const TRANSITIONS: &str = "palisade_circuit_breaker_transitions_total";
/// Calls, by `breaker` and `outcome`: `success`, `failure`, `slow` (a slow success; slow failures
/// count as `failure`), `rejected` (not permitted) and `ignored` (classified as ignored, or
/// abandoned before an outcome).
pub const CALLS: &str = "palisade_circuit_breaker_calls_total";

pub(crate) struct Metrics {
    name: String,
    pub(crate) state: Gauge,
    pub(crate) success: Counter,
    pub(crate) failure: Counter,
    pub(crate) slow: Counter,
    pub(crate) rejected: Counter,
    pub(crate) ignored: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        describe();
        let name = name.to_owned();
        let calls = |outcome: &'static str| metrics::counter!(CALLS, "breaker" => name.clone(), "outcome" => outcome);
        Self {
            state: metrics::gauge!(STATE, "breaker" => name.clone()),
            success: calls("success"),
            failure: calls("failure"),
            slow: calls("slow"),
            rejected: calls("rejected"),
            ignored: calls("ignored"),
            name,
        }
    }

    /// Counts a transition. Registered on first use: a breaker that never leaves `closed` has no
    /// transition series.
    #[cold]
    pub(crate) fn transition(&self, from: State, to: State) {
        metrics::counter!(
            TRANSITIONS,
            "breaker" => self.name.clone(),
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        self.state.set(f64::from(to.code()));
    }
}

fn describe() {
    describe_gauge!(
        STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, 5 metrics only."
    );
    describe_counter!(
        TRANSITIONS,
        Unit::Count,
        "Circuit breaker state changes, by from and to state."
    );
    describe_counter!(
        CALLS,
        Unit::Count,
        "Calls through a circuit breaker, by outcome: success, failure, slow, rejected, ignored."
    );
}
