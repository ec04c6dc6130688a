//! The refusal counter, read back from a debugging recorder.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use palisade_request_guard::{RequestGuardLayer, metrics::REJECTED};
use tower::{Layer, Service, ServiceExt, service_fn};

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn counter(snapshot: &Snapshot, reason: &str, mode: &str) -> Option<u64> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let labels: Vec<(&str, &str)> = key.key().labels().map(|l| (l.key(), l.value())).collect();
        let same = key.kind() == MetricKind::Counter
            && key.key().name() == REJECTED
            && labels == [("reason", reason), ("mode", mode)];
        match value {
            DebugValue::Counter(c) if same => Some(*c),
            _ => None,
        }
    })
}

async fn run(observe_only: bool, targets: &[&'static str]) -> (Snapshot, Vec<u16>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered when the layer is built, against the recorder installed then.
    let layer = metrics::with_local_recorder(&recorder, || {
        let builder = RequestGuardLayer::builder();
        let builder = if observe_only {
            builder.observe_only()
        } else {
            builder
        };
        builder.build().unwrap()
    });
    let mut svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    let mut statuses = Vec::new();
    for target in targets {
        let request = Request::get(*target).body(()).unwrap();
        let response = svc.ready().await.unwrap().call(request).await.unwrap();
        statuses.push(response.status().as_u16());
    }
    (snapshotter.snapshot().into_vec(), statuses)
}

const TARGETS: &[&str] = &[
    "/ok",
    "/a/../b",
    "/%2e%2e/x",
    "/a%2fb",
    "/x%00",
    "/fine?x=1",
];

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let (snapshot, statuses) = run(false, TARGETS).await;
    assert_eq!(statuses, [200, 400, 400, 400, 400, 200]);
    assert_eq!(counter(&snapshot, "dot_segment", "enforce"), Some(2));
    assert_eq!(counter(&snapshot, "encoded_slash", "enforce"), Some(1));
    assert_eq!(counter(&snapshot, "null_byte", "enforce"), Some(1));
    // Registered at build time, so every reason is exported from the start, at zero.
    assert_eq!(counter(&snapshot, "backslash", "enforce"), Some(0));
    assert_eq!(counter(&snapshot, "dot_segment", "observe_only"), None);
    // Described when the layer was built, so the exposition has HELP and a unit.
    let (_, unit, description, _) = snapshot
        .iter()
        .find(|(key, ..)| key.key().name() == REJECTED)
        .unwrap();
    assert_eq!(*unit, Some(metrics::Unit::Count));
    assert!(description.is_some());
}

#[tokio::test]
async fn observe_only_counts_under_its_mode_and_serves() {
    let (snapshot, statuses) = run(true, TARGETS).await;
    assert_eq!(statuses, [200; 6]);
    assert_eq!(counter(&snapshot, "dot_segment", "observe_only"), Some(2));
    assert_eq!(counter(&snapshot, "encoded_slash", "observe_only"), Some(1));
    assert_eq!(counter(&snapshot, "dot_segment", "enforce"), None);
}
