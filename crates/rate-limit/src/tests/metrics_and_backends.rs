//! Metrics (observe-only and enforced outcomes, the keys gauge, evictions) and asynchronous
//! backends, through the same router as the parent module's tests.

use std::sync::atomic::{AtomicUsize, Ordering};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use super::*;
/// One snapshot: taking it drains the debugging recorder's counters.
type Snap = Vec<(
    metrics_util::CompositeKey,
    Option<::metrics::Unit>,
    Option<::metrics::SharedString>,
    DebugValue,
)>;

fn snap(snapshotter: &Snapshotter) -> Snap {
    snapshotter.snapshot().into_vec()
}

fn counter(snap: &Snap, name: &str, labels: &[(&str, &str)]) -> u64 {
    snap.iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let matches = key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
            match (matches, value) {
                (true, DebugValue::Counter(n)) => Some(*n),
                _ => None,
            }
        })
        .unwrap_or(0)
}

fn gauge(snap: &Snap, name: &str) -> f64 {
    snap.iter()
        .find_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(g) if key.key().name() == name => Some(g.into_inner()),
            _ => None,
        })
        .unwrap_or(f64::NAN)
}

#[tokio::test(start_paused = true)]
async fn observe_only_serves_counts_and_sends_no_fields() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = ::metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder()
            .policy("p", PolicyConfig::per_minute(2))
            .observe_only()
            .build()
            .unwrap()
    });
    let app = app(layer);
    for _ in 0..5 {
        let response = send(&app, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
    }
    let labels = |o, m| [("policy", "p"), ("outcome", o), ("mode", m)];
    let snapshot = snap(&snapshotter);
    assert_eq!(
        counter(
            &snapshot,
            metrics::REQUESTS,
            &labels("admitted", "observe_only")
        ),
        2
    );
    assert_eq!(
        counter(
            &snapshot,
            metrics::REQUESTS,
            &labels("limited", "observe_only")
        ),
        3
    );
    assert_eq!(
        counter(&snapshot, metrics::REQUESTS, &labels("limited", "enforce")),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn enforced_outcomes_and_keys_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = ::metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder()
            .policy("p", PolicyConfig::per_minute(1))
            .max_keys(100)
            .build()
            .unwrap()
    });
    let app = app(layer.clone());
    send(&app, "/").await;
    send(&app, "/").await;
    let labels = |o| [("policy", "p"), ("outcome", o)];
    let snapshot = snap(&snapshotter);
    assert_eq!(
        counter(&snapshot, metrics::REQUESTS, &labels("admitted")),
        1
    );
    assert_eq!(counter(&snapshot, metrics::REQUESTS, &labels("limited")), 1);
    // A snapshot drains the debugging recorder: later values are deltas.
    let keys_before = gauge(&snapshot, metrics::KEYS);
    assert!((keys_before - 1.0).abs() < 0.5);
    // A flood of distinct clients: the cap holds, evictions are counted, the gauge agrees.
    for i in 0..5000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        assert_eq!(
            send_from(&app, "/", &ip, &[]).await.status(),
            StatusCode::OK
        );
        assert!(layer.keys("p") <= 100);
    }
    let snapshot = snap(&snapshotter);
    let evicted = counter(
        &snapshot,
        metrics::EVICTIONS,
        &[("policy", "p"), ("reason", "capacity")],
    );
    assert!(evicted >= 4900, "{evicted}");
    #[allow(clippy::cast_precision_loss)]
    let held = layer.keys("p") as f64;
    let keys = keys_before + gauge(&snapshot, metrics::KEYS);
    assert!((keys - held).abs() < 0.5, "gauge {keys}, held {held}");
    // A minute later they are all idle: the next new key sweeps them.
    tokio::time::advance(Duration::from_secs(61)).await;
    send_from(&app, "/", "192.0.2.200", &[]).await;
    assert_eq!(layer.keys("p"), 1);
    let idle = counter(
        &snap(&snapshotter),
        metrics::EVICTIONS,
        &[("policy", "p"), ("reason", "idle")],
    );
    assert!(idle >= 90, "{idle}");
}

/// Decides asynchronously: refuses every `n`th request, or fails.
struct Remote {
    calls: AtomicUsize,
    fail: bool,
}

impl RateLimitBackend for Remote {
    fn check(&self, checks: &[Check<'_>]) -> Pending {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let states: Vec<PolicyState> = checks
            .iter()
            .map(|c| {
                assert_eq!(c.key(), &Key::ip("192.0.2.1".parse().unwrap()));
                if n % 2 == 1 {
                    PolicyState::limited(Duration::from_millis(2500), Duration::from_secs(5))
                } else {
                    PolicyState::admitted(u64::from(c.policy().rate()) - 1, Duration::from_secs(1))
                }
            })
            .collect();
        let fail = self.fail;
        Pending::Later(Box::pin(async move {
            tokio::task::yield_now().await;
            if fail {
                return Err("store unreachable".into());
            }
            Ok(Decision::from_states(states))
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn asynchronous_backends_plug_in_and_fail_open() {
    let remote = Remote {
        calls: AtomicUsize::new(0),
        fail: false,
    };
    let router = app(RateLimitLayer::builder()
        .policy("p", PolicyConfig::per_minute(10))
        .backend(remote)
        .build()
        .unwrap());
    let ok = send(&router, "/").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, "ratelimit"), r#""p";r=9;t=1"#);
    let refused = send(&router, "/").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), "3");

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = ::metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder()
            .policy("p", PolicyConfig::per_minute(10))
            .backend(Remote {
                calls: AtomicUsize::new(1),
                fail: true,
            })
            .build()
            .unwrap()
    });
    let router = app(layer);
    for _ in 0..3 {
        assert_eq!(send(&router, "/").await.status(), StatusCode::OK);
    }
    assert_eq!(
        counter(
            &snap(&snapshotter),
            metrics::REQUESTS,
            &[("policy", "p"), ("outcome", "backend_error")]
        ),
        3
    );
}
