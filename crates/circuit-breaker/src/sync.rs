//! Atomics from `std`, or from loom under `--cfg palisade_loom` (see [`palisade_core::sync`]).

#[cfg(palisade_loom)]
pub(crate) use loom::sync::atomic::AtomicU8;
pub(crate) use palisade_core::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(not(palisade_loom))]
pub(crate) use std::sync::atomic::AtomicU8;

/// Keeps a hot atomic on its own cache lines (two, against the adjacent-line prefetcher), so that
/// writers of one counter do not slow down readers of another.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
