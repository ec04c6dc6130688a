//! Model checks of the breaker's lock-free state under every interleaving loom explores:
//! half-open admits at most the permitted probes, exactly one caller makes each transition, the
//! machine is never left half-open with phantom probes, and the count window's totals always
//! match its slots.
//!
//! Run with `RUSTFLAGS="--cfg palisade_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release -p
//! palisade-circuit-breaker --lib loom_tests` (`cargo xtask ci` does).

use crate::{
    machine::{Admission, Machine, ProbeResult, State},
    window::{CountWindow, Sample},
};
use loom::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
};

const WAIT: u64 = 1_000;

/// Three callers race for two probe slots of a half-open breaker and report `results`; at no
/// point are more than two probes in flight, and afterwards the machine is in a state that admits
/// again (never half-open with slots held by nobody).
fn half_open_race(results: [ProbeResult; 3]) -> State {
    // Outside the model: plain std types.
    let final_state = std::sync::Arc::new(std::sync::Mutex::new(State::Closed));
    let seen = final_state.clone();
    loom::model(move || {
        let m = Arc::new(Machine::new(State::Closed, 2, 2, None));
        m.force(State::HalfOpen, 0, WAIT);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let caller = |m: Arc<Machine>, in_flight: Arc<AtomicUsize>, result| {
            move || {
                if let Admission::Probe { generation } = m.admit(|| 10, || WAIT).admission {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= 2, "{now} probes in flight, 2 permitted");
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    m.on_probe(generation, result, 10, || WAIT);
                }
            }
        };
        // Two threads and the main thread: three callers.
        let workers: Vec<_> = results[..2]
            .iter()
            .map(|&result| thread::spawn(caller(m.clone(), in_flight.clone(), result)))
            .collect();
        caller(m.clone(), in_flight.clone(), results[2])();
        for worker in workers {
            worker.join().unwrap();
        }
        let s = m.snapshot();
        if s.state == State::HalfOpen {
            assert_eq!(s.probes_in_flight, 0, "stuck: a probe slot held by nobody");
            assert!(matches!(
                m.admit(|| 10, || WAIT).admission,
                Admission::Probe { .. }
            ));
        }
        *seen.lock().unwrap() = s.state;
    });
    let state = *final_state.lock().unwrap();
    state
}

#[test]
fn successful_probes_close_and_never_exceed_the_permitted_count() {
    let state = half_open_race([ProbeResult::Success; 3]);
    assert_eq!(state, State::Closed);
}

#[test]
fn a_failed_probe_reopens_whatever_the_interleaving() {
    let _ = half_open_race([
        ProbeResult::Success,
        ProbeResult::Failure,
        ProbeResult::Ignored,
    ]);
}

#[test]
fn ignored_probes_release_their_slots() {
    let state = half_open_race([ProbeResult::Ignored; 3]);
    assert_eq!(state, State::HalfOpen);
}

#[test]
fn one_caller_ends_the_open_wait() {
    loom::model(|| {
        let m = Arc::new(Machine::new(State::Closed, 2, 1, Some(5_000)));
        m.trip(0, 0, WAIT, crate::Cause::FailureRate).unwrap();
        let transitions = Arc::new(AtomicUsize::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (m, transitions, probes) = (m.clone(), transitions.clone(), probes.clone());
                thread::spawn(move || {
                    let admitted = m.admit(|| WAIT, || WAIT);
                    if admitted.transition.is_some() {
                        transitions.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Admission::Probe { generation } = admitted.admission {
                        probes.fetch_add(1, Ordering::SeqCst);
                        m.on_probe(generation, ProbeResult::Ignored, WAIT, || WAIT);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(
            transitions.load(Ordering::SeqCst),
            1,
            "one open -> half-open"
        );
        let admitted = probes.load(Ordering::SeqCst);
        assert!((1..=2).contains(&admitted));
        let s = m.snapshot();
        assert_eq!((s.state, s.probes_in_flight), (State::HalfOpen, 0));
        assert_eq!(s.deadline, Some(WAIT + 5_000));
    });
}

#[test]
fn count_window_totals_match_its_slots() {
    loom::model(|| {
        let w = Arc::new(CountWindow::new(2));
        let samples = [
            Sample {
                failure: true,
                slow: false,
            },
            Sample {
                failure: false,
                slow: true,
            },
        ];
        let workers: Vec<_> = samples
            .into_iter()
            .map(|sample| {
                let w = w.clone();
                thread::spawn(move || {
                    w.record(sample);
                    w.record(sample);
                })
            })
            .collect();
        w.clear();
        for worker in workers {
            worker.join().unwrap();
        }
        let (word, sum) = w.consistency();
        assert_eq!(word, sum);
    });
}
