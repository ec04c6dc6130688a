//! Fresh request ids: UUID v7 (default), UUID v4, or your own generator. No lock per id.
//!
//! `uuid`'s own `Uuid::now_v7()` keeps its monotonic counter in one process-wide
//! `std::sync::Mutex<ContextV7>`, and without its `fast-rng` feature both `now_v7()` and
//! `new_v4()` make one `getrandom` system call per UUID (and panic if it fails). Under load every
//! worker thread would meet on that mutex. This module instead keeps, per thread, a `ChaCha12`
//! generator seeded once from the operating system (`rand`'s `StdRng`) and the last timestamp
//! and counter, and builds the UUID with `uuid::Builder`: no lock, no system call, no shared
//! cache line. The random bits come from a cryptographically secure generator, so ids are not
//! guessable from earlier ones.

use std::{
    cell::RefCell,
    fmt,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use rand::{RngCore, SeedableRng, rngs::StdRng};
use uuid::{Builder, Uuid};

use palisade_core::RequestId;

/// Makes fresh request ids; implement it for your own id scheme (ULIDs, KSUIDs, a node prefix).
///
/// Called once per request that needs a fresh id, from any thread, concurrently: keep it
/// lock-free. The ids must pass the layer's validation (charset and length): the layer checks one
/// sample when it is built and refuses the configuration otherwise, and at run time falls back to
/// a UUID v7 for any id that does not pass.
///
/// Closures `Fn() -> RequestId` implement it:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use palisade_request_id::{RequestId, RequestIdLayer};
///
/// static NEXT: AtomicU64 = AtomicU64::new(1);
/// let layer = RequestIdLayer::builder()
///     .generator(|| {
///         let n = NEXT.fetch_add(1, Ordering::Relaxed);
///         RequestId::new(&format!("node7-{n}")).expect("valid id")
///     })
///     .build()
///     .unwrap();
/// ```
pub trait MakeRequestId: Send + Sync + 'static {
    /// A fresh id.
    fn make_request_id(&self) -> RequestId;
}

impl<F> MakeRequestId for F
where
    F: Fn() -> RequestId + Send + Sync + 'static,
{
    fn make_request_id(&self) -> RequestId {
        self()
    }
}

/// The built-in id formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum IdFormat {
    /// UUID v7 (RFC 9562), the default: a millisecond Unix timestamp, then random bits, so ids sort
    /// by creation time like the log lines that carry them. Within one millisecond, the ids made
    /// on one thread increase (a 12-bit counter, RFC 9562 method 1); across threads, ids of the
    /// same millisecond are unordered.
    #[default]
    UuidV7,
    /// UUID v4 (RFC 9562): 122 random bits, no time information.
    UuidV4,
}

impl IdFormat {
    /// A fresh id of this format.
    pub fn generate(self) -> RequestId {
        RequestId::from(self.generate_uuid())
    }

    /// A fresh UUID of this format.
    pub fn generate_uuid(self) -> Uuid {
        match self {
            Self::UuidV7 => new_v7(),
            Self::UuidV4 => new_v4(),
        }
    }
}

/// The generator a layer uses: a built-in format or a custom one.
#[derive(Clone)]
pub(crate) enum Generator {
    Format(IdFormat),
    Custom(Arc<dyn MakeRequestId>),
}

impl Generator {
    pub(crate) fn generate(&self) -> RequestId {
        match self {
            Self::Format(format) => format.generate(),
            Self::Custom(make) => make.make_request_id(),
        }
    }
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(format) => format.fmt(f),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Per-thread generator state.
struct ThreadState {
    rng: StdRng,
    /// The timestamp of the last UUID v7 made on this thread, in Unix milliseconds.
    last_ms: u64,
    /// The 12-bit counter of the last UUID v7 made on this thread.
    counter: u16,
}

/// The largest value of the 12-bit `rand_a` counter.
const COUNTER_MAX: u16 = 0x0fff;

impl ThreadState {
    fn new() -> Self {
        Self {
            rng: seeded_rng(),
            last_ms: 0,
            counter: 0,
        }
    }

    /// A counter start for a new millisecond: random, with the top bit clear so that at least
    /// 2048 more ids fit in the same millisecond.
    fn fresh_counter(&mut self) -> u16 {
        (self.rng.next_u32() & 0x07ff) as u16
    }

    fn v7(&mut self, now_ms: u64) -> Uuid {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.counter = self.fresh_counter();
        } else if self.counter < COUNTER_MAX {
            // Same millisecond (or the clock stepped back): keep the order on this thread.
            self.counter += 1;
        } else {
            // 4096 ids in one millisecond on one thread: borrow the next millisecond.
            self.last_ms = self.last_ms.saturating_add(1);
            self.counter = self.fresh_counter();
        }
        let mut bytes = [0u8; 10];
        self.rng.fill_bytes(&mut bytes[2..]);
        bytes[..2].copy_from_slice(&self.counter.to_be_bytes());
        Builder::from_unix_timestamp_millis(self.last_ms, &bytes).into_uuid()
    }

    fn v4(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// A `ChaCha12` generator seeded from the operating system. Should the operating system's source
/// fail (it does not on supported platforms once booted), the seed falls back to the standard
/// library's per-process random hash keys mixed with the time and thread, rather than panicking.
fn seeded_rng() -> StdRng {
    StdRng::try_from_rng(&mut rand::rngs::OsRng).unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        std::thread::current().id().hash(&mut hasher);
        SystemTime::now().hash(&mut hasher);
        StdRng::seed_from_u64(hasher.finish())
    })
}

thread_local! {
    static STATE: RefCell<ThreadState> = RefCell::new(ThreadState::new());
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs `f` on this thread's state, or on a temporary one when the thread-local is unavailable
/// (thread teardown) or already borrowed (a generator called from inside a generator).
fn with_state<R>(f: impl Fn(&mut ThreadState) -> R) -> R {
    STATE
        .try_with(|state| state.try_borrow_mut().ok().map(|mut s| f(&mut s)))
        .ok()
        .flatten()
        .unwrap_or_else(|| f(&mut ThreadState::new()))
}

/// A fresh UUID v7 from this thread's generator.
pub(crate) fn new_v7() -> Uuid {
    let now = unix_millis();
    with_state(|state| state.v7(now))
}

/// A fresh UUID v4 from this thread's generator.
pub(crate) fn new_v4() -> Uuid {
    with_state(ThreadState::v4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn v7_is_version_7_and_carries_the_time() {
        let uuid = ThreadState::new().v7(1_700_000_000_123);
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos), (1_700_000_000, 123_000_000));

        let before = unix_millis();
        let (secs, nanos) = new_v7().get_timestamp().unwrap().to_unix();
        let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        // At most a few milliseconds ahead if earlier ids on this thread borrowed ahead.
        assert!(ms >= before && ms <= unix_millis() + 3, "{before} {ms}");
    }

    #[test]
    fn v4_is_version_4() {
        let uuid = new_v4();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn v7_increases_on_one_thread() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_v7()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn counter_overflow_borrows_the_next_millisecond() {
        let mut state = ThreadState::new();
        let first = state.v7(1_000);
        let mut last = first;
        for _ in 0..10_000 {
            let next = state.v7(1_000);
            assert!(next > last);
            last = next;
        }
        assert!(state.last_ms > 1_000, "borrowed ahead");
        // A clock that steps back does not break the order.
        assert!(state.v7(10) > last);
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..5_000)
                        .flat_map(|_| [new_v7(), new_v4()])
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            for uuid in handle.join().unwrap() {
                assert!(seen.insert(uuid), "duplicate {uuid}");
            }
        }
    }

    #[test]
    fn formats_render_as_lower_case_hyphenated() {
        for format in [IdFormat::UuidV7, IdFormat::UuidV4] {
            let id = format.generate();
            assert_eq!(id.as_str().len(), 36);
            let parsed: Uuid = id.as_str().parse().unwrap();
            assert_eq!(parsed.hyphenated().to_string(), id.as_str());
        }
    }
}
