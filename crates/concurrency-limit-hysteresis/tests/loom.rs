//! Model checks of the hysteresis state machine under every interleaving loom explores:
//! the maximum is never exceeded, and once every slot is released the limiter is accepting.
//! Run with `RUSTFLAGS="--cfg palisade_loom" cargo test -p palisade-concurrency-limit-hysteresis --test loom --release`
//! (`cargo xtask ci` does).
#![cfg(palisade_loom)]

use std::time::Duration;

use loom::{sync::Arc, thread};
use palisade_concurrency_limit_hysteresis::{Thresholds, hysteresis::Hysteresis};

fn run(thresholds: Thresholds, critical: [bool; 3]) {
    loom::model(move || {
        let h = Arc::new(Hysteresis::new(thresholds, Duration::ZERO, true));
        let workers: Vec<_> = critical
            .into_iter()
            .map(|critical| {
                let h = Arc::clone(&h);
                thread::spawn(move || {
                    let acquired = h.acquire(critical, true);
                    assert!(h.load().0 <= thresholds.max, "maximum exceeded");
                    assert!(acquired.count <= thresholds.max);
                    if acquired.counted {
                        h.release();
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
        [true, true, false],
    );
}
