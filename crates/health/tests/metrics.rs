//! The metrics the probes emit, read back from a debugging recorder.

use std::time::Duration;

use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use palisade_core::OverloadState;
use palisade_health::{Check, HealthLayer, Probe, Status};

type Snapshot = Vec<(CompositeKey, Option<metrics::SharedString>, DebugValue)>;

fn find<'a>(
    snapshot: &'a Snapshot,
    kind: MetricKind,
    name: &str,
    label: (&str, &str),
) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, _, value)| {
        let labels: Vec<(&str, &str)> = key.key().labels().map(|l| (l.key(), l.value())).collect();
        (key.kind() == kind && key.key().name() == name && labels == [label]).then_some(value)
    })
}

fn gauge(snapshot: &Snapshot, name: &str, label: (&str, &str)) -> Option<f64> {
    match find(snapshot, MetricKind::Gauge, name, label)? {
        DebugValue::Gauge(g) => Some(g.into_inner()),
        _ => None,
    }
}

fn histogram(snapshot: &Snapshot, name: &str, label: (&str, &str)) -> Vec<f64> {
    match find(snapshot, MetricKind::Histogram, name, label) {
        Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.into_inner()).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn check_and_probe_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered when the layer is built, against the recorder installed then.
    let layer = metrics::with_local_recorder(&recorder, || {
        HealthLayer::builder()
            .overload_state(OverloadState::new())
            .readiness_check(
                Check::from_fn("db", || async {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    true
                })
                .on_demand(Duration::ZERO),
            )
            .readiness_check(
                Check::from_fn("cache", || async { false })
                    .on_demand(Duration::ZERO)
                    .non_critical(),
            )
            .readiness_check(
                Check::from_fn("hangs", std::future::pending::<bool>)
                    .timeout(Duration::from_millis(100))
                    .on_demand(Duration::ZERO)
                    .non_critical(),
            )
            .build()
            .unwrap()
    });
    let health = layer.handle();
    health.mark_started();
    assert_eq!(health.report(Probe::Readiness).await.status(), Status::Warn);
    assert_eq!(health.report(Probe::Startup).await.status(), Status::Pass);

    let snapshot: Snapshot = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, d, v)| (k, d, v))
        .collect();
    let status = "palisade_health_check_status";
    assert_eq!(gauge(&snapshot, status, ("check", "db")), Some(1.0));
    assert_eq!(gauge(&snapshot, status, ("check", "cache")), Some(0.0));
    assert_eq!(gauge(&snapshot, status, ("check", "hangs")), Some(0.0));
    let duration = "palisade_health_check_duration_seconds";
    assert_eq!(histogram(&snapshot, duration, ("check", "db")), vec![0.04]);
    assert_eq!(
        histogram(&snapshot, duration, ("check", "hangs")),
        vec![0.1]
    );
    let probe = "palisade_health_probe_status";
    assert_eq!(gauge(&snapshot, probe, ("probe", "ready")), Some(0.5));
    assert_eq!(gauge(&snapshot, probe, ("probe", "startup")), Some(1.0));
    assert_eq!(
        gauge(&snapshot, probe, ("probe", "live")),
        Some(1.0),
        "not probed yet: the process is up"
    );
}

#[test]
fn every_metric_is_described() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        HealthLayer::builder()
            .overload_state(OverloadState::new())
            .readiness_check(Check::from_fn("db", || async { true }))
            .build()
            .unwrap()
    });
    let described: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(_, _, description, _)| description.is_some())
        .map(|(key, ..)| key.key().name().to_owned())
        .collect();
    for name in [
        palisade_health::metrics::CHECK_STATUS,
        palisade_health::metrics::CHECK_DURATION,
        palisade_health::metrics::PROBE_STATUS,
    ] {
        assert!(
            described.iter().any(|d| d == name),
            "{name} in {described:?}"
        );
    }
}
