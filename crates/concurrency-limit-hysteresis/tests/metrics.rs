//! The metrics the limiter emits, read back from a debugging recorder.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, Watermark};
use palisade_core::{EnforcementMode, OverloadState};
use palisade_testkit::metrics::value;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn run(mode: EnforcementMode) -> Vec<(CompositeKey, DebugValue)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered when the layer is built, against the recorder installed then.
    let layer = metrics::with_local_recorder(&recorder, || {
        ConcurrencyLimitLayer::builder()
            .name("api")
            .max_in_flight(3)
            .high_water(Watermark::count(2))
            .low_water(Watermark::count(1))
            .mode(mode)
            .overload_state(OverloadState::new())
            .build()
            .unwrap()
    });
    let mut svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    // Hold three responses (their bodies hold the permits), then one more is refused at the max.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            svc.ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap(),
        );
    }
    let snapshot = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect();
    drop(held);
    snapshot
}

#[tokio::test]
async fn enforcing_limiter_reports_in_flight_state_and_rejections() {
    let s = run(EnforcementMode::Enforce).await;
    let api = [("limiter", "api")];
    // 2 admitted (high water), then shedding: the third and fourth are refused.
    assert_eq!(
        value(
            &s,
            MetricKind::Gauge,
            "palisade_concurrency_in_flight",
            &api
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&s, MetricKind::Gauge, "palisade_concurrency_state", &api),
        Some(1.0)
    );
    let shed = [
        ("limiter", "api"),
        ("reason", "shedding"),
        ("mode", "enforce"),
    ];
    assert_eq!(
        value(
            &s,
            MetricKind::Counter,
            "palisade_concurrency_rejected_total",
            &shed
        ),
        Some(2.0)
    );
    // The marks, for dashboards that plot in-flight against the limits.
    for (bound, expected) in [("max", 3.0), ("high_water", 2.0), ("low_water", 1.0)] {
        let labels = [("limiter", "api"), ("bound", bound)];
        assert_eq!(
            value(&s, MetricKind::Gauge, "palisade_concurrency_limit", &labels),
            Some(expected),
            "{bound}"
        );
    }
}

#[tokio::test]
async fn observe_only_counts_what_it_would_refuse() {
    let s = run(EnforcementMode::ObserveOnly).await;
    let api = [("limiter", "api")];
    assert_eq!(
        value(
            &s,
            MetricKind::Gauge,
            "palisade_concurrency_in_flight",
            &api
        ),
        Some(4.0)
    );
    let shed = [
        ("limiter", "api"),
        ("reason", "shedding"),
        ("mode", "observe_only"),
    ];
    assert_eq!(
        value(
            &s,
            MetricKind::Counter,
            "palisade_concurrency_rejected_total",
            &shed
        ),
        Some(1.0)
    );
    let max = [
        ("limiter", "api"),
        ("reason", "at_maximum"),
        ("mode", "observe_only"),
    ];
    assert_eq!(
        value(
            &s,
            MetricKind::Counter,
            "palisade_concurrency_rejected_total",
            &max
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_overload_level_is_published_in_steps_and_exactly_at_zero() {
    let overload = OverloadState::new();
    // max 640: the level is republished when the count moves by 10 (1/64 of the maximum).
    let layer = ConcurrencyLimitLayer::builder()
        .max_in_flight(640)
        .overload_state(overload.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    let mut held = Vec::new();
    for _ in 0..9 {
        held.push(
            svc.ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap(),
        );
    }
    assert!(
        overload.level() < 1e-9,
        "9 of 640 is within one step of the last publication (0)"
    );
    held.push(
        svc.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap(),
    );
    assert!(
        (overload.level() - 10.0 / 640.0).abs() < 1e-3,
        "{}",
        overload.level()
    );
    held.truncate(1);
    assert!(
        (overload.level() - 10.0 / 640.0).abs() < 1e-3,
        "9 releases stay within the step"
    );
    held.clear();
    assert!(
        overload.level() < 1e-9,
        "an idle limiter publishes exactly zero"
    );
}
