//! Reading back what a layer recorded through the `metrics` facade: a snapshot of a
//! `metrics_util` debugging recorder, and one lookup by kind, name and exact label set.

use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, Snapshotter},
};

/// Every metric the recorder holds now, as (key, value) pairs.
pub fn snapshot(snapshotter: &Snapshotter) -> Vec<(CompositeKey, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

/// The value of the metric of `kind` named `name` with exactly `labels` (in any order): a
/// counter's count, a gauge's value, or a histogram's number of samples. `None` when there is
/// no such series.
///
/// # Panics
///
/// On a counter above `u32::MAX`: test counts are small, and a huge one is a bug.
pub fn value(
    snapshot: &[(CompositeKey, DebugValue)],
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    snapshot.iter().find_map(|(key, value)| {
        let key_labels: Vec<(&str, &str)> =
            key.key().labels().map(|l| (l.key(), l.value())).collect();
        let same = key.kind() == kind
            && key.key().name() == name
            && labels.iter().all(|l| key_labels.contains(l))
            && key_labels.len() == labels.len();
        same.then(|| match value {
            DebugValue::Counter(c) => f64::from(u32::try_from(*c).expect("small test counts")),
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => {
                f64::from(u32::try_from(h.len()).expect("small test counts"))
            }
        })
    })
}
