//! The metrics the shedder emits, read back from a debugging recorder.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::{
    MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use palisade_core::{EnforcementMode, OverloadState};
use palisade_loadshed_priority::{LoadShedLayer, RandomSource};
use tower::{Layer, ServiceExt, service_fn};

struct Zero;

impl RandomSource for Zero {
    fn next_unit(&self) -> f64 {
        0.0
    }
}

async fn run(mode: EnforcementMode) -> Vec<(String, String, String, u64)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let state = OverloadState::new();
    let limiter = state.register("limiter").unwrap();
    // Level 0.65: sheddable is always shed, sheddable_plus with probability 0.5 (the zero roll
    // sheds it), critical never.
    limiter.publish(0.65, false);
    let layer = metrics::with_local_recorder(&recorder, || {
        LoadShedLayer::builder()
            .overload_state(state.clone())
            .random_source(Zero)
            .mode(mode)
            .build()
            .unwrap()
    });
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    for value in ["sheddable", "sheddable", "sheddable_plus", "critical"] {
        let request = Request::get("/")
            .header("x-priority", value)
            .body(())
            .unwrap();
        drop(svc.clone().oneshot(request).await.unwrap());
    }
    let mut counters: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.kind() == MetricKind::Counter)
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) if n > 0 => {
                let label = |name: &str| {
                    key.key()
                        .labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_owned())
                };
                Some((
                    key.key().name().to_owned(),
                    label("priority")?,
                    format!("{}/{}", label("outcome")?, label("mode")?),
                    n,
                ))
            }
            _ => None,
        })
        .collect();
    counters.sort();
    counters
}

fn row(priority: &str, outcome: &str, n: u64) -> (String, String, String, u64) {
    (
        "palisade_loadshed_requests_total".into(),
        priority.into(),
        outcome.into(),
        n,
    )
}

#[tokio::test]
async fn decisions_are_counted_by_class_and_outcome() {
    assert_eq!(
        run(EnforcementMode::Enforce).await,
        vec![
            row("critical", "admitted/enforce", 1),
            row("sheddable", "shed/enforce", 2),
            row("sheddable_plus", "shed/enforce", 1)
        ]
    );
}

#[tokio::test]
async fn observe_only_counts_what_it_would_shed() {
    assert_eq!(
        run(EnforcementMode::ObserveOnly).await,
        vec![
            row("critical", "admitted/observe_only", 1),
            row("sheddable", "shed/observe_only", 2),
            row("sheddable_plus", "shed/observe_only", 1)
        ]
    );
}
