//! The shared overload signal (DESIGN.md decision 7).
//!
//! Limiters publish how loaded they are; the load shedder and the readiness probe read it. Each
//! publisher owns a slot holding one packed atomic word, so a publish is one store and a read is a
//! handful of loads, with no lock on either path. Readers see the worst source: the highest level,
//! and "overloaded" if any source says so. New sources (memory, file descriptors, queueing delay)
//! register their own slot without changing the readers.

use std::borrow::Cow;

use crate::{
    config::ConfigError,
    sync::{Arc, AtomicU32, AtomicUsize, Mutex, Ordering},
};

/// How many publishers one state accepts.
pub(crate) const MAX_SOURCES: usize = 16;

// Slot word layout: bits 0..16 level (fixed point, 0xFFFF = 1.0), bit 16 overloaded, bit 17 claimed.
const LEVEL_MASK: u32 = 0xFFFF;
const OVERLOADED: u32 = 1 << 16;
const CLAIMED: u32 = 1 << 17;

fn encode(level: f64, overloaded: bool) -> u32 {
    let level = if level.is_nan() {
        0.0
    } else {
        level.clamp(0.0, 1.0)
    };
    // In range by the clamp above, so the cast neither truncates nor wraps.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let fixed = (level * f64::from(LEVEL_MASK)).round() as u32;
    CLAIMED | fixed | if overloaded { OVERLOADED } else { 0 }
}

fn decode_level(word: u32) -> f64 {
    f64::from(word & LEVEL_MASK) / f64::from(LEVEL_MASK)
}

struct Inner {
    slots: [AtomicU32; MAX_SOURCES],
    /// One past the highest slot ever claimed: readers scan no further.
    used: AtomicUsize,
    names: Mutex<[Option<Cow<'static, str>>; MAX_SOURCES]>,
}

/// The overload signal shared by limiters (writers) and shedders and probes (readers).
///
/// Cloning is cheap and every clone sees the same state. Use [`OverloadState::global`] when
/// layers are added one at a time without wiring, or create one per server and hand it to each
/// layer to keep servers in one process independent.
///
/// # Example
///
/// ```
/// use palisade_core::OverloadState;
///
/// let state = OverloadState::new();
/// let limiter = state.register("concurrency").unwrap();
/// limiter.publish(0.9, true);
/// assert!(state.is_overloaded());
/// assert!((state.level() - 0.9).abs() < 1e-4);
/// drop(limiter); // a source that goes away stops counting
/// assert!(!state.is_overloaded());
/// ```
#[derive(Clone)]
pub struct OverloadState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OverloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverloadState")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Default for OverloadState {
    fn default() -> Self {
        Self::new()
    }
}

/// What readers see: the worst of all sources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverloadSnapshot {
    /// The highest utilisation any source published, in `[0, 1]`.
    pub level: f64,
    /// Whether any source says it is overloaded (for example, a limiter that is shedding).
    pub overloaded: bool,
}

/// One source's last publication, for readiness details and status pages.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSnapshot {
    /// The name the source registered with.
    pub name: Cow<'static, str>,
    /// Its utilisation, in `[0, 1]`.
    pub level: f64,
    /// Whether it says it is overloaded.
    pub overloaded: bool,
}

impl OverloadState {
    /// A new, independent state with no sources: level 0, not overloaded.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: std::array::from_fn(|_| AtomicU32::new(0)),
                used: AtomicUsize::new(0),
                names: Mutex::new(std::array::from_fn(|_| None)),
            }),
        }
    }

    /// The process-wide state that layers use when none is given to them.
    #[cfg(not(palisade_loom))]
    pub fn global() -> &'static OverloadState {
        static GLOBAL: std::sync::OnceLock<OverloadState> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(OverloadState::new)
    }

    /// Model-checking builds (`--cfg palisade_loom`) cannot keep loom atomics in a static: there
    /// every call returns a fresh state. Loom models create their own states explicitly.
    #[cfg(palisade_loom)]
    pub fn global() -> &'static OverloadState {
        Box::leak(Box::new(OverloadState::new()))
    }

    /// Registers a publisher named `name` (for example `concurrency`). The source starts at level
    /// 0, not overloaded, and stops counting when dropped.
    ///
    /// # Errors
    ///
    /// When 16 publishers (the most a state holds) are already registered.
    pub fn register(
        &self,
        name: impl Into<Cow<'static, str>>,
    ) -> Result<OverloadSource, ConfigError> {
        for (index, slot) in self.inner.slots.iter().enumerate() {
            if slot
                .compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.inner.used.fetch_max(index + 1, Ordering::AcqRel);
                self.names()[index] = Some(name.into());
                return Ok(OverloadSource {
                    state: self.clone(),
                    index,
                });
            }
        }
        Err(ConfigError::new(
            "overload.sources",
            format!("at most {MAX_SOURCES} overload sources can be registered"),
        ))
    }

    fn names(
        &self,
    ) -> impl std::ops::DerefMut<Target = [Option<Cow<'static, str>>; MAX_SOURCES]> + '_ {
        // A panic while holding this lock cannot leave the names inconsistent: keep going.
        self.inner
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn words(&self) -> impl Iterator<Item = u32> + '_ {
        let used = self.inner.used.load(Ordering::Acquire);
        self.inner.slots[..used]
            .iter()
            .map(|s| s.load(Ordering::Acquire))
    }

    /// The worst level and whether any source is overloaded.
    pub fn snapshot(&self) -> OverloadSnapshot {
        let (mut level, mut overloaded) = (0u32, false);
        for word in self.words() {
            level = level.max(word & LEVEL_MASK);
            overloaded |= word & OVERLOADED != 0;
        }
        OverloadSnapshot {
            level: decode_level(level),
            overloaded,
        }
    }

    /// The highest utilisation any source published, in `[0, 1]`.
    pub fn level(&self) -> f64 {
        self.snapshot().level
    }

    /// Whether any source says it is overloaded.
    pub fn is_overloaded(&self) -> bool {
        self.words().any(|w| w & OVERLOADED != 0)
    }

    /// Every registered source's last publication.
    pub fn sources(&self) -> Vec<SourceSnapshot> {
        let names = self.names();
        let used = self.inner.used.load(Ordering::Acquire);
        (0..used)
            .filter_map(|i| {
                let word = self.inner.slots[i].load(Ordering::Acquire);
                let name = names[i].clone()?;
                (word & CLAIMED != 0).then(|| SourceSnapshot {
                    name,
                    level: decode_level(word),
                    overloaded: word & OVERLOADED != 0,
                })
            })
            .collect()
    }
}

/// A precomputed fixed-point reciprocal of a capacity, so that publishing `used / capacity` needs
/// no division on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatioScale {
    /// `LEVEL_MASK / capacity` in 32.32 fixed point; 0 for a zero capacity.
    factor: u64,
}

impl RatioScale {
    /// The scale of `capacity`.
    pub fn new(capacity: u32) -> Self {
        let factor = if capacity == 0 {
            0
        } else {
            (u64::from(LEVEL_MASK) << 32) / u64::from(capacity)
        };
        Self { factor }
    }

    #[inline]
    fn level(self, used: u32) -> u32 {
        // used <= u32::MAX and factor <= 0xFFFF << 32, so the product fits in u128 and the
        // shifted result is clamped to the 16-bit level.
        let level = (u128::from(used) * u128::from(self.factor)) >> 32;
        #[allow(clippy::cast_possible_truncation)]
        let level = level.min(u128::from(LEVEL_MASK)) as u32;
        level
    }
}

/// A publisher's handle on its slot in an [`OverloadState`]. Dropping it clears the slot.
pub struct OverloadSource {
    state: OverloadState,
    index: usize,
}

impl std::fmt::Debug for OverloadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverloadSource")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl OverloadSource {
    /// Publishes this source's utilisation (`[0, 1]`, clamped; NaN counts as 0) and whether it is
    /// overloaded. One atomic store.
    pub fn publish(&self, level: f64, overloaded: bool) {
        self.state.inner.slots[self.index].store(encode(level, overloaded), Ordering::Release);
    }

    /// Publishes utilisation as `used` out of the capacity `scale` was made for (clamped to 1)
    /// and whether the source is overloaded: a multiply and a shift, and no store when nothing
    /// changed, so a limiter can call it on every request.
    #[inline]
    pub fn publish_ratio(&self, used: u32, scale: RatioScale, overloaded: bool) {
        let word = CLAIMED | scale.level(used) | if overloaded { OVERLOADED } else { 0 };
        let slot = &self.state.inner.slots[self.index];
        // An unchanged value is not written: other cores keep their cached copy of the slot.
        if slot.load(Ordering::Relaxed) != word {
            slot.store(word, Ordering::Release);
        }
    }

    /// The state this source publishes into.
    pub fn state(&self) -> &OverloadState {
        &self.state
    }
}

impl Drop for OverloadSource {
    fn drop(&mut self) {
        self.state.names()[self.index] = None;
        self.state.inner.slots[self.index].store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[test]
    fn empty_state_is_calm() {
        let state = OverloadState::new();
        assert_eq!(
            state.snapshot(),
            OverloadSnapshot {
                level: 0.0,
                overloaded: false
            }
        );
        assert!(state.sources().is_empty());
    }

    #[test]
    fn readers_see_the_worst_source() {
        let state = OverloadState::new();
        let a = state.register("a").unwrap();
        let b = state.register("b").unwrap();
        a.publish(0.3, false);
        b.publish(0.7, false);
        assert!((state.level() - 0.7).abs() < 1e-4);
        assert!(!state.is_overloaded());
        a.publish(0.2, true);
        assert!(state.is_overloaded());
        let names: Vec<_> = state
            .sources()
            .into_iter()
            .map(|s| (s.name, s.overloaded))
            .collect();
        assert_eq!(names, vec![("a".into(), true), ("b".into(), false)]);
    }

    #[test]
    fn levels_are_clamped_and_nan_is_zero() {
        let state = OverloadState::new();
        let a = state.register("a").unwrap();
        a.publish(7.0, false);
        assert!((state.level() - 1.0).abs() < f64::EPSILON);
        a.publish(-1.0, false);
        assert!(state.level().abs() < f64::EPSILON);
        a.publish(f64::NAN, false);
        assert!(state.level().abs() < f64::EPSILON);
    }

    #[test]
    fn ratios_are_published_in_fixed_point() {
        let state = OverloadState::new();
        let a = state.register("a").unwrap();
        let thousand = RatioScale::new(1000);
        a.publish_ratio(800, thousand, true);
        assert!((state.level() - 0.8).abs() < 1e-4);
        assert!(state.is_overloaded());
        a.publish_ratio(1000, thousand, false);
        assert!((state.level() - 1.0).abs() < 1e-4);
        a.publish_ratio(5000, thousand, false);
        assert!((state.level() - 1.0).abs() < 1e-4, "clamped");
        a.publish_ratio(u32::MAX, RatioScale::new(1), false);
        assert!((state.level() - 1.0).abs() < 1e-4, "no overflow");
        a.publish_ratio(1, RatioScale::new(0), false);
        assert!(state.level().abs() < f64::EPSILON, "no capacity, no level");
        assert!(!state.is_overloaded());
    }

    #[test]
    fn dropped_sources_free_their_slot() {
        let state = OverloadState::new();
        let sources: Vec<_> = (0..MAX_SOURCES)
            .map(|i| state.register(format!("s{i}")).unwrap())
            .collect();
        let err = state.register("one too many").unwrap_err();
        assert_eq!(err.key(), "overload.sources");
        sources[3].publish(1.0, true);
        assert!(state.is_overloaded());
        drop(sources);
        assert!(!state.is_overloaded());
        let again = state.register("again").unwrap();
        again.publish(0.5, false);
        assert_eq!(state.sources().len(), 1);
    }

    #[test]
    fn clones_share_state() {
        let state = OverloadState::new();
        let clone = state.clone();
        let source = clone.register("x").unwrap();
        source.publish(0.1, true);
        assert!(state.is_overloaded());
        assert!(
            OverloadState::global()
                .sources()
                .iter()
                .all(|s| s.name != "x")
        );
    }
}
