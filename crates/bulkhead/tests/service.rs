//! The layer as a tower service, on a paused clock: slots held until the body ends, cancelled
//! waiters, the wait-timeout response, observe-only mode, and the metrics it emits.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use metrics_util::{MetricKind, debugging::DebuggingRecorder};
use palisade_bulkhead::{BulkheadLayer, metrics as names};
use palisade_core::{EnforcementMode, Priority};
use palisade_testkit::metrics::{snapshot as snap, value};
use tower::{Layer, Service, ServiceExt, service_fn};

type Svc = tower::util::BoxCloneService<
    Request<()>,
    Response<palisade_core::ResponseBody<Full<Bytes>, palisade_bulkhead::Permit>>,
    Infallible,
>;

fn service(layer: &BulkheadLayer) -> Svc {
    tower::util::BoxCloneService::new(layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })))
}

fn layer(max_concurrent: u32, max_queued: u32, mode: EnforcementMode) -> BulkheadLayer {
    BulkheadLayer::builder()
        .name("svc")
        .max_concurrent(max_concurrent)
        .max_queued(max_queued)
        .max_wait(Duration::from_millis(500))
        .retry_after(Duration::from_secs(3))
        .mode(mode)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_held_until_the_body_ends() {
    let layer = layer(1, 0, EnforcementMode::Enforce);
    let bulkhead = layer.bulkhead().clone();
    // Two services from the same layer (two routes) share the slot.
    let (mut a, mut b) = (service(&layer), service(&layer));
    let response = a
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(bulkhead.in_flight(), 1, "headers sent, body not yet");
    let refused = b
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "3");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
    assert_eq!(bulkhead.in_flight(), 0, "released at the end of the body");

    // A body dropped unread (client gone) releases it too.
    let response = a
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(bulkhead.in_flight(), 1);
    drop(response);
    assert_eq!(bulkhead.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_times_out_with_a_503_naming_the_bulkhead() {
    let layer = layer(1, 5, EnforcementMode::Enforce);
    let mut svc = service(&layer);
    let held = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert_eq!(response.status(), 503);
    let doc: serde_json_value::Value =
        serde_json_value::parse(&response.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(doc.get("reason"), Some("bulkhead_wait_timeout"));
    assert_eq!(doc.get("bulkhead"), Some("svc"));
    drop(held);
    assert_eq!(layer.bulkhead().in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_request_leaves_the_queue_and_leaks_nothing() {
    let layer = layer(1, 5, EnforcementMode::Enforce);
    let bulkhead = layer.bulkhead().clone();
    let mut svc = service(&layer);
    let held = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    let waiting = svc.ready().await.unwrap().call(Request::new(()));
    assert_eq!(bulkhead.queued(), 1);
    drop(waiting); // the client went away
    assert_eq!(bulkhead.queued(), 0);
    drop(held);
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_runs_when_a_slot_frees_up() {
    let layer = layer(1, 5, EnforcementMode::Enforce);
    let mut svc = service(&layer);
    let held = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    let mut request = Request::new(());
    Priority::Sheddable.assign(&mut request);
    let waiting = tokio::spawn(svc.ready().await.unwrap().call(request));
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(layer.bulkhead().in_flight(), 1);
    drop(response);
    assert_eq!(layer.bulkhead().in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn observe_only_serves_everything() {
    let layer = layer(1, 0, EnforcementMode::ObserveOnly);
    let mut svc = service(&layer);
    let mut held = Vec::new();
    for _ in 0..3 {
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    assert_eq!(layer.bulkhead().in_flight(), 3);
    held.clear();
    assert_eq!(layer.bulkhead().in_flight(), 0);
}

/// A tiny JSON reader for the two string members the tests look at (no extra dependency).
mod serde_json_value {
    pub(crate) struct Value(String);
    impl Value {
        pub(crate) fn get(&self, key: &str) -> Option<&str> {
            let needle = format!("\"{key}\":\"");
            let start = self.0.find(&needle)? + needle.len();
            let end = self.0[start..].find('"')? + start;
            Some(&self.0[start..end])
        }
    }
    pub(crate) fn parse(bytes: &[u8]) -> Value {
        Value(String::from_utf8(bytes.to_vec()).unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_count_slots_queue_rejections_and_waits() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || layer(1, 1, EnforcementMode::Enforce));
    let mut svc = service(&layer);
    let held = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    let waiting = svc.ready().await.unwrap().call(Request::new(()));
    let full = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(full.status(), 503);

    let snapshot = snap(&snapshotter);
    let bulkhead = [("bulkhead", "svc")];
    assert_eq!(
        value(&snapshot, MetricKind::Gauge, names::IN_FLIGHT, &bulkhead),
        Some(1.0)
    );
    assert_eq!(
        value(&snapshot, MetricKind::Gauge, names::QUEUED, &bulkhead),
        Some(1.0)
    );
    let rejected = |reason| {
        value(
            &snapshot,
            MetricKind::Counter,
            names::REJECTED,
            &[("bulkhead", "svc"), ("reason", reason), ("mode", "enforce")],
        )
    };
    assert_eq!(rejected("queue_full"), Some(1.0));
    assert_eq!(rejected("wait_timeout"), Some(0.0));

    // The waiter times out: one wait recorded, one wait_timeout rejection.
    assert_eq!(waiting.await.unwrap().status(), 503);
    drop(held);
    let snapshot = snap(&snapshotter);
    let rejected = value(
        &snapshot,
        MetricKind::Counter,
        names::REJECTED,
        &[
            ("bulkhead", "svc"),
            ("reason", "wait_timeout"),
            ("mode", "enforce"),
        ],
    );
    assert_eq!(rejected, Some(1.0));
    assert_eq!(
        value(
            &snapshot,
            MetricKind::Histogram,
            names::WAIT_SECONDS,
            &bulkhead
        ),
        Some(1.0)
    );
    // The debugging recorder resets values when it takes a snapshot: this is the change since
    // the first one (in-flight is kept with increments and decrements, queued is set).
    assert_eq!(
        value(&snapshot, MetricKind::Gauge, names::IN_FLIGHT, &bulkhead),
        Some(-1.0)
    );
    assert_eq!(layer.bulkhead().in_flight(), 0);
    assert_eq!(
        value(&snapshot, MetricKind::Gauge, names::QUEUED, &bulkhead),
        Some(0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_evicted_waiter_gets_a_queue_full_503_and_is_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        BulkheadLayer::builder()
            .name("svc")
            .max_concurrent(1)
            .max_queued(1)
            .priority_ordering(true)
            .build()
            .unwrap()
    });
    let mut svc = service(&layer);
    let request = |priority: Priority| {
        let mut request = Request::new(());
        priority.assign(&mut request);
        request
    };
    let held = svc
        .ready()
        .await
        .unwrap()
        .call(request(Priority::Critical))
        .await
        .unwrap();
    let sheddable = svc
        .ready()
        .await
        .unwrap()
        .call(request(Priority::Sheddable));
    let critical = svc.ready().await.unwrap().call(request(Priority::Critical));

    let start = tokio::time::Instant::now();
    let evicted = sheddable.await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "rejected at once");
    assert_eq!(evicted.status(), 503);
    let doc = serde_json_value::parse(&evicted.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(doc.get("reason"), Some("bulkhead_queue_full"));

    let snapshot = snap(&snapshotter);
    let rejected = |reason| {
        value(
            &snapshot,
            MetricKind::Counter,
            names::REJECTED,
            &[("bulkhead", "svc"), ("reason", reason), ("mode", "enforce")],
        )
    };
    assert_eq!(rejected("queue_full"), Some(1.0), "the eviction, once");
    assert_eq!(rejected("wait_timeout"), Some(0.0));
    assert_eq!(
        value(
            &snapshot,
            MetricKind::Gauge,
            names::QUEUED,
            &[("bulkhead", "svc")]
        ),
        Some(1.0),
        "the Critical holds the place"
    );

    drop(held);
    let response = critical.await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    assert_eq!(
        (layer.bulkhead().in_flight(), layer.bulkhead().queued()),
        (0, 0)
    );
}
