//! `std::sync` or, under `--cfg palisade_loom`, loom's model-checked equivalents.
//!
//! Palisade's lock-free state (overload slots, limiter counters, breaker states) imports its
//! atomics from here, so the same code runs in production and under the `loom` model checker:
//! `RUSTFLAGS="--cfg palisade_loom" cargo test -p <crate> --test loom --release`.

#[cfg(palisade_loom)]
pub use loom::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};
#[cfg(not(palisade_loom))]
pub use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};
