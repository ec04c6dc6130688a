//! Metric names and handles. Handles are registered once, when the layer is built: install the
//! metrics recorder (exporter) first.

use metrics::{Gauge, Histogram, Unit, describe_gauge, describe_histogram};

use crate::{Probe, Status};

/// Last result of each check (`check` label): 1 pass, 0.5 warn, 0 fail (and 0 until its first
/// run ends).
pub const CHECK_STATUS: &str = "palisade_health_check_status";
/// Duration of each check run, timeouts included (`check` label).
pub const CHECK_DURATION: &str = "palisade_health_check_duration_seconds";
/// Last answer of each probe (`probe` label: `live`, `ready`, `startup`): 1 pass, 0.5 warn, 0
/// fail. Updated when a probe is answered; before the first, the state at start (live 1,
/// ready 0, startup 0).
pub const PROBE_STATUS: &str = "palisade_health_probe_status";

pub(crate) fn describe() {
    describe_gauge!(
        CHECK_STATUS,
        "Last result of a health check: 1 pass, 0.5 warn, 0 fail."
    );
    describe_histogram!(
        CHECK_DURATION,
        Unit::Seconds,
        "Duration of health check runs, timeouts included."
    );
    describe_gauge!(
        PROBE_STATUS,
        "Last answer of a health probe: 1 pass, 0.5 warn, 0 fail."
    );
}

pub(crate) struct CheckMetrics {
    status: Gauge,
    duration: Histogram,
}

impl CheckMetrics {
    pub(crate) fn new(check: &str) -> Self {
        let check = check.to_owned();
        Self {
            status: metrics::gauge!(CHECK_STATUS, "check" => check.clone()),
            duration: metrics::histogram!(CHECK_DURATION, "check" => check),
        }
    }

    pub(crate) fn record(&self, status: Status, seconds: f64) {
        self.status.set(status.gauge_value());
        self.duration.record(seconds);
    }
}

pub(crate) struct ProbeMetrics {
    gauges: [Gauge; 3],
}

impl ProbeMetrics {
    pub(crate) fn new() -> Self {
        let gauges = Probe::ALL.map(|p| metrics::gauge!(PROBE_STATUS, "probe" => p.as_str()));
        // Before any probe: the process answers, and it has not started.
        gauges[Probe::Liveness.index()].set(Status::Pass.gauge_value());
        gauges[Probe::Readiness.index()].set(Status::Fail.gauge_value());
        gauges[Probe::Startup.index()].set(Status::Fail.gauge_value());
        Self { gauges }
    }

    pub(crate) fn record(&self, probe: Probe, status: Status) {
        self.gauges[probe.index()].set(status.gauge_value());
    }
}
