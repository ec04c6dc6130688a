//! Model checks of the hysteresis state machine under every interleaving loom explores:
//! the maximum is never exceeded, once every slot is released the limiter is accepting, and the
//! last publication shows the final state (an idle limiter is never shown busy or shedding).
//! Run with `RUSTFLAGS="--cfg palisade_loom" cargo test -p palisade-concurrency-limit-hysteresis --lib loom_tests --release`
//! (`cargo xtask ci` does).

use std::time::Duration;

use crate::{
    Thresholds,
    hysteresis::{Hysteresis, Publication},
};
use loom::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
};

/// How a caller takes a slot.
#[derive(Clone, Copy)]
enum Path {
    /// The full decision only.
    Full,
    /// As the limiter does: the one-CAS fast path, the full decision when it declines.
    Fast,
}

/// Takes a slot; whether the caller holds one.
fn acquire(h: &Hysteresis, path: Path, critical: bool) -> bool {
    match path {
        Path::Full => {
            let acquired = h.acquire(critical, true);
            assert!(acquired.count <= h.thresholds().max);
            acquired.counted
        }
        Path::Fast => h.try_acquire().is_some() || h.acquire(critical, true).counted,
    }
}

fn release(h: &Hysteresis, path: Path) {
    match path {
        Path::Full => {
            h.release();
        }
        Path::Fast => {
            if h.try_release().is_none() {
                h.release();
            }
        }
    }
}

fn run(thresholds: Thresholds, path: Path, critical: [bool; 3]) {
    loom::model(move || {
        let h = Arc::new(Hysteresis::new(thresholds, Duration::ZERO, true));
        let workers: Vec<_> = critical
            .into_iter()
            .map(|critical| {
                let h = Arc::clone(&h);
                thread::spawn(move || {
                    let counted = acquire(&h, path, critical);
                    assert!(h.load().0 <= thresholds.max, "maximum exceeded");
                    if counted {
                        release(&h, path);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(h.load(), (0, false), "stuck: count or shedding left behind");
    });
}

#[test]
fn never_exceeds_the_maximum_and_never_sticks_shedding() {
    run(
        Thresholds {
            max: 2,
            high: 1,
            low: 0,
        },
        Path::Full,
        [false, false, false],
    );
}

#[test]
fn critical_reserve_respects_the_maximum() {
    run(
        Thresholds {
            max: 2,
            high: 1,
            low: 0,
        },
        Path::Full,
        [true, true, false],
    );
}

#[test]
fn the_fast_paths_keep_the_bounds_and_never_stick_shedding() {
    run(
        Thresholds {
            max: 3,
            high: 2,
            low: 1,
        },
        Path::Fast,
        [true, false, false],
    );
}

fn pack(count: u32, shedding: bool) -> u64 {
    u64::from(count) | (u64::from(shedding) << 32)
}

#[test]
fn the_last_publication_shows_the_final_state() {
    loom::model(|| {
        // High water 2: two callers may start shedding, and a release ends it (low water 1).
        let thresholds = Thresholds {
            max: 3,
            high: 2,
            low: 1,
        };
        let h = Arc::new(Hysteresis::new(thresholds, Duration::ZERO, true));
        // A step of 1: every change is republished, so publications overlap as often as can be.
        let p = Arc::new(Publication::new(1));
        let shown = Arc::new(AtomicU64::new(0));
        let publish_if_stale = |h: &Hysteresis, p: &Publication, shown: &AtomicU64| {
            let (count, shedding) = h.load();
            if p.is_stale(count, shedding) {
                p.publish(h, |count, shedding| {
                    shown.store(pack(count, shedding), Ordering::Relaxed);
                });
            }
        };
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (h, p, shown) = (Arc::clone(&h), Arc::clone(&p), Arc::clone(&shown));
                thread::spawn(move || {
                    if acquire(&h, Path::Fast, false) {
                        publish_if_stale(&h, &p, &shown);
                        release(&h, Path::Fast);
                    }
                    publish_if_stale(&h, &p, &shown);
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(h.load(), (0, false));
        assert_eq!(
            shown.load(Ordering::Relaxed),
            pack(0, false),
            "an idle limiter is shown busy or shedding"
        );
    });
}
