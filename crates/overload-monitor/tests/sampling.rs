//! The sampling loop on a paused clock: levels published into the overload state, recovery after
//! the dwell, observe-only mode, unreadable resources, metrics.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_core::OverloadState;
use palisade_overload_monitor::{Monitor, OverloadMonitor, Reading, Thresholds};

/// Readings handed out one per sample; the last one repeats.
#[derive(Clone)]
struct Script(Arc<Mutex<VecDeque<io::Result<Option<Reading>>>>>);

impl Script {
    fn new(ratios: &[Option<u64>]) -> Self {
        Self(Arc::new(Mutex::new(
            ratios
                .iter()
                .map(|r| match r {
                    Some(percent) => Ok(Some(Reading::new(*percent, 100))),
                    None => Err(io::Error::other("gone")),
                })
                .collect(),
        )))
    }
}

impl Monitor for Script {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn read(&mut self) -> io::Result<Option<Reading>> {
        let mut readings = self.0.lock().unwrap();
        if readings.len() > 1 {
            readings.pop_front().unwrap()
        } else {
            match readings.front().unwrap() {
                Ok(reading) => Ok(*reading),
                Err(_) => Err(io::Error::other("gone")),
            }
        }
    }
}

const TICK: Duration = Duration::from_millis(250);

/// The shared state's `(level, overloaded)` after each of `ratios`' samples.
async fn run(ratios: &[Option<u64>], observe_only: bool) -> (Vec<(f64, bool)>, Snapshotter) {
    let state = OverloadState::new();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut builder = OverloadMonitor::builder()
        .monitor(Script::new(ratios), Thresholds::default())
        .overload_state(state.clone());
    if observe_only {
        builder = builder.observe_only();
    }
    let monitors = metrics::with_local_recorder(&recorder, || builder.build().unwrap());
    let running = monitors.spawn();
    let mut seen = Vec::new();
    // The first tick is immediate; sample just after each.
    tokio::time::sleep(Duration::from_millis(1)).await;
    for _ in ratios {
        let snapshot = state.snapshot();
        seen.push((
            (snapshot.level * 100.0).round() / 100.0,
            snapshot.overloaded,
        ));
        tokio::time::sleep(TICK).await;
    }
    running.stop().await;
    assert!(
        state.level().abs() < 1e-9,
        "a stopped monitor publishes nothing"
    );
    (seen, snapshotter)
}

fn gauge(snapshotter: &Snapshotter, name: &str, label: (&str, &str)) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let labelled = key
                .labels()
                .any(|l| l.key() == label.0 && l.value() == label.1);
            match value {
                DebugValue::Gauge(v) if key.name() == name && labelled => Some(v.into_inner()),
                _ => None,
            }
        })
}

#[tokio::test(start_paused = true)]
async fn levels_are_published_for_the_shedder_and_recover_after_the_dwell() {
    let ratios = [
        Some(50),
        Some(82),
        Some(91),
        Some(96),
        Some(85),
        Some(70),
        Some(70),
        Some(70),
        Some(70),
        Some(70),
    ];
    let (seen, snapshotter) = run(&ratios, false).await;
    assert_eq!(
        seen,
        vec![
            (0.0, false),
            (0.6, false), // warn: every Sheddable request shed
            (0.7, false), // degrade: SheddablePlus too
            (0.96, true), // critical: overloaded, at the observed ratio (readiness shows it)
            (0.85, true), // 85 %: not below resume
            (0.7, true),  // below resume: the dwell starts
            (0.7, true),
            (0.7, true),
            (0.7, true),
            (0.0, false), // a whole second below resume
        ]
    );
    let ratio = gauge(
        &snapshotter,
        "palisade_overload_resource_ratio",
        ("resource", "scripted"),
    );
    assert_eq!(ratio, Some(0.7));
    let refusing = gauge(
        &snapshotter,
        "palisade_overload_action",
        ("action", "refuse_new_requests"),
    );
    assert_eq!(refusing, Some(0.0), "recovered");
}

#[tokio::test(start_paused = true)]
async fn observe_only_publishes_nothing_but_tracks_the_level() {
    let (seen, snapshotter) = run(&[Some(50), Some(97), Some(97)], true).await;
    assert!(seen.iter().all(|s| *s == (0.0, false)), "{seen:?}");
    let pressure = gauge(
        &snapshotter,
        "palisade_overload_pressure",
        ("mode", "observe_only"),
    );
    assert_eq!(pressure, Some(3.0), "critical, observed");
    let refusing = gauge(
        &snapshotter,
        "palisade_overload_action",
        ("action", "refuse_new_requests"),
    );
    assert_eq!(refusing, Some(0.0), "nothing applied");
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_resource_keeps_its_last_level() {
    let (seen, _) = run(&[Some(92), None, None, Some(10)], false).await;
    assert_eq!(
        seen,
        vec![(0.7, false), (0.7, false), (0.7, false), (0.7, false)],
        "the failures change nothing; 10 % starts the dwell"
    );
}

#[test]
fn invalid_configurations_are_errors() {
    let err = OverloadMonitor::builder()
        .interval(Duration::from_millis(1))
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "overload.interval");
    let mut thresholds = Thresholds::default();
    thresholds.critical = 0.5;
    let err = OverloadMonitor::builder()
        .monitor(Script::new(&[Some(1)]), thresholds)
        .overload_state(OverloadState::new())
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "overload.scripted.critical");
    let mut config = palisade_overload_monitor::OverloadMonitorConfig::default();
    config.warn_level = 0.9;
    config.degrade_level = 0.8;
    assert_eq!(
        OverloadMonitor::from_config(config).unwrap_err().key(),
        "overload.warn_level"
    );
}
