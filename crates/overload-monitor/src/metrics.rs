//! Metric names and handles, registered when the monitors are built.

use metrics::{Gauge, Unit, describe_gauge};

/// Each resource's last reading as a ratio of its limit, by `resource` (`memory`, `fds`, `lag`,
/// or a custom monitor's name).
pub const RESOURCE_RATIO: &str = "palisade_overload_resource_ratio";
/// Each resource's pressure level (0 normal, 1 warn, 2 degrade, 3 critical), by `resource` and
/// `mode` (`observe_only`: the level that would have been acted on).
pub const PRESSURE: &str = "palisade_overload_pressure";
/// 1 while an action is applied because of resource pressure, by `action`
/// (`shed_sheddable`, `shed_sheddable_plus`, `refuse_new_requests`); always 0 in observe-only
/// mode.
pub const ACTION: &str = "palisade_overload_action";

/// The actions, in order of severity, with the level that starts each.
pub(crate) const ACTIONS: [(&str, crate::Pressure); 3] = [
    ("shed_sheddable", crate::Pressure::Warn),
    ("shed_sheddable_plus", crate::Pressure::Degrade),
    ("refuse_new_requests", crate::Pressure::Critical),
];

pub(crate) struct ResourceMetrics {
    pub(crate) ratio: Gauge,
    pub(crate) pressure: Gauge,
}

impl ResourceMetrics {
    pub(crate) fn new(resource: &str, mode: &'static str) -> Self {
        describe();
        Self {
            ratio: metrics::gauge!(RESOURCE_RATIO, "resource" => resource.to_owned()),
            pressure: metrics::gauge!(PRESSURE, "resource" => resource.to_owned(), "mode" => mode),
        }
    }
}

pub(crate) fn action_gauges() -> [Gauge; 3] {
    ACTIONS.map(|(action, _)| metrics::gauge!(ACTION, "action" => action))
}

fn describe() {
    describe_gauge!(
        RESOURCE_RATIO,
        Unit::Count,
        "A resource's last reading as a ratio of its limit (memory working set, open descriptors, runtime lag)."
    );
    describe_gauge!(
        PRESSURE,
        Unit::Count,
        "A resource's pressure level: 0 normal, 1 warn, 2 degrade, 3 critical."
    );
    describe_gauge!(
        ACTION,
        Unit::Count,
        "1 while an overload action is applied because of resource pressure."
    );
}
