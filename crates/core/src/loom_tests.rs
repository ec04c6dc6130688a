//! Model checks of the overload state's slots under every interleaving loom explores.
//! Run with `RUSTFLAGS="--cfg palisade_loom" cargo test -p palisade-core --lib loom_tests --release`
//! (`cargo xtask ci` does).

use crate::OverloadState;
use loom::thread;

#[test]
fn concurrent_registrations_get_distinct_slots() {
    loom::model(|| {
        let state = OverloadState::new();
        let a = {
            let state = state.clone();
            thread::spawn(move || {
                let source = state.register("a").unwrap();
                source.publish(0.25, false);
                source
            })
        };
        let b = {
            let state = state.clone();
            thread::spawn(move || {
                let source = state.register("b").unwrap();
                source.publish(0.75, true);
                source
            })
        };
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        // Had both claimed one slot, one publication would have overwritten the other.
        let sources = state.sources();
        assert_eq!(sources.len(), 2, "{sources:?}");
        assert!(state.is_overloaded());
        assert!((state.level() - 0.75).abs() < 1e-4);
        drop(b);
        assert!(!state.is_overloaded());
        assert!((state.level() - 0.25).abs() < 1e-4);
        drop(a);
    });
}

#[test]
fn a_reader_sees_a_publication_or_nothing_never_a_torn_value() {
    loom::model(|| {
        let state = OverloadState::new();
        let source = state.register("limiter").unwrap();
        let reader = {
            let state = state.clone();
            thread::spawn(move || state.snapshot())
        };
        source.publish(0.5, true);
        let seen = reader.join().unwrap();
        // Level and flag are one word: either the initial (0, calm) or the published (0.5, overloaded).
        let initial = seen.level == 0.0 && !seen.overloaded;
        let published = (seen.level - 0.5).abs() < 1e-4 && seen.overloaded;
        assert!(initial || published, "{seen:?}");
    });
}
