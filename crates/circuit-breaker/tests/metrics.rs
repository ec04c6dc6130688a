//! The metrics a breaker emits, read back from a debugging recorder.

use std::time::Duration;

use metrics_util::{MetricKind, debugging::DebuggingRecorder};
use palisade_circuit_breaker::{Breaker, Outcome};
use palisade_testkit::metrics::value;

#[test]
fn calls_states_and_transitions_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Everything runs inside the recorder's scope: handles are registered when the breaker is
    // built, transition counters on the first transition of each kind.
    metrics::with_local_recorder(&recorder, || {
        let breaker = Breaker::builder()
            .name("db")
            .count_window(10)
            .minimum_calls(4)
            .consecutive_failures(0)
            .slow_calls(Duration::from_secs(3600), 1.0)
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().success();
        breaker.try_acquire().unwrap().record(Outcome::Ignore);
        drop(breaker.try_acquire().unwrap()); // abandoned: ignored
        for _ in 0..3 {
            breaker.try_acquire().unwrap().failure();
        }
        assert!(breaker.try_acquire().is_err());
        assert!(breaker.try_acquire().is_err());
        breaker.force_open();
        breaker.reset();
    });
    let s: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect();
    let calls = |outcome| {
        value(
            &s,
            MetricKind::Counter,
            "palisade_circuit_breaker_calls_total",
            &[("breaker", "db"), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("success"), Some(1.0));
    assert_eq!(calls("ignored"), Some(2.0));
    assert_eq!(calls("failure"), Some(3.0));
    assert_eq!(calls("rejected"), Some(2.0));
    assert_eq!(calls("slow"), Some(0.0));
    let transitions = |from, to| {
        value(
            &s,
            MetricKind::Counter,
            "palisade_circuit_breaker_transitions_total",
            &[("breaker", "db"), ("from", from), ("to", to)],
        )
    };
    assert_eq!(transitions("closed", "open"), Some(1.0));
    assert_eq!(transitions("open", "forced_open"), Some(1.0));
    assert_eq!(transitions("forced_open", "closed"), Some(1.0));
    assert_eq!(transitions("closed", "half_open"), None);
    assert_eq!(
        value(
            &s,
            MetricKind::Gauge,
            "palisade_circuit_breaker_state",
            &[("breaker", "db")]
        ),
        Some(0.0),
        "closed again"
    );
}

#[test]
fn every_metric_is_described() {
    // `promtool check metrics` fails on metrics without HELP: each one has a description.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let breaker = Breaker::builder().build().unwrap();
        breaker.trip();
    });
    let described: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(_, _, description, _)| description.is_some())
        .map(|(k, _, _, _)| k.key().name().to_owned())
        .collect();
    for name in [
        palisade_circuit_breaker::metrics::STATE,
        palisade_circuit_breaker::metrics::TRANSITIONS,
        palisade_circuit_breaker::metrics::CALLS,
    ] {
        assert!(described.iter().any(|d| d == name), "{name} has no HELP");
    }
}
