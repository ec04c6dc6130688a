//! [`BreakerRegistry`]: one breaker per route or per key, bounded, with idle eviction.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, PoisonError, RwLock},
};

use tokio::time::Instant;

use crate::{
    breaker::{Breaker, Hooks},
    config::Settings,
    sync::{AtomicU64, Ordering::Relaxed},
};

/// Keys longer than this share the overflow breaker: a key is a label value, and a client that
/// controls keys must not grow memory or metric series without bound.
pub const MAX_KEY_LEN: usize = 128;

/// The key of the breaker shared by calls beyond the registry's capacity.
pub const OVERFLOW_KEY: &str = "_overflow";

pub(crate) struct Registry {
    name: Arc<str>,
    settings: Arc<Settings>,
    hooks: Hooks,
    map: RwLock<HashMap<Arc<str>, Breaker>>,
    overflow: OnceLock<Breaker>,
    epoch: Instant,
    last_sweep: AtomicU64,
}

/// The breakers of a per-route or per-key scope: created on first use (named `name:key`), at most
/// `max_breakers` of them, and evicted after `idle_timeout` without calls when room is needed
/// (see [`BreakerRegistry::evict_idle`] for the exact rule).
/// Calls for keys beyond the capacity (or longer than [`MAX_KEY_LEN`]) share one overflow breaker
/// named `name:_overflow`.
///
/// Lookups take a read lock on the map; the layers keep the last breaker they used per service
/// (per route, under `Router::route_layer`), so a route's calls reach their breaker without it.
/// Cloning is a reference count.
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<Registry>,
}

impl std::fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("name", &&*self.inner.name)
            .field("len", &self.len())
            .finish()
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl BreakerRegistry {
    pub(crate) fn new(name: Arc<str>, settings: Arc<Settings>, hooks: Hooks) -> Self {
        Self {
            inner: Arc::new(Registry {
                name,
                settings,
                hooks,
                map: RwLock::new(HashMap::new()),
                overflow: OnceLock::new(),
                epoch: Instant::now(),
                last_sweep: AtomicU64::new(0),
            }),
        }
    }

    /// The scope's name (the prefix of its breakers' names).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn now_ms(&self) -> u64 {
        millis(Instant::now().saturating_duration_since(self.inner.epoch))
    }

    fn create(&self, key: &str) -> Breaker {
        let r = &*self.inner;
        let breaker = Breaker::from_settings(
            Arc::from(format!("{}:{key}", r.name)),
            Arc::clone(&r.settings),
            r.hooks.clone(),
        );
        breaker.inner.last_seen.store(self.now_ms(), Relaxed);
        breaker
    }

    /// The breaker of `key`, if it exists.
    pub fn get(&self, key: &str) -> Option<Breaker> {
        if key == OVERFLOW_KEY {
            return self.inner.overflow.get().cloned();
        }
        let map = self
            .inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).cloned()
    }

    /// The breaker of `key`, created if needed (or the overflow breaker when the registry is
    /// full of breakers in use).
    pub fn get_or_create(&self, key: &str) -> Breaker {
        self.lookup(key).0
    }

    /// The breaker of `key` and whether it is the overflow breaker.
    pub(crate) fn lookup(&self, key: &str) -> (Breaker, bool) {
        if key.len() > MAX_KEY_LEN || key == OVERFLOW_KEY {
            return (self.overflow(), true);
        }
        {
            let map = self
                .inner
                .map
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(breaker) = map.get(key) {
                breaker.touch();
                return (breaker.clone(), false);
            }
        }
        let mut map = self
            .inner
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(breaker) = map.get(key) {
            breaker.touch();
            return (breaker.clone(), false);
        }
        let now = self.now_ms();
        let idle = millis(self.inner.settings.idle_timeout);
        let sweep_due = now.saturating_sub(self.inner.last_sweep.load(Relaxed)) >= idle;
        if map.len() >= self.inner.settings.max_breakers || sweep_due {
            self.sweep(&mut map, now);
        }
        if map.len() >= self.inner.settings.max_breakers {
            return (self.overflow(), true);
        }
        let breaker = self.create(key);
        map.insert(Arc::from(key), breaker.clone());
        (breaker, false)
    }

    fn overflow(&self) -> Breaker {
        self.inner
            .overflow
            .get_or_init(|| self.create(OVERFLOW_KEY))
            .clone()
    }

    /// Removes the breakers that had no call for the idle timeout; returns how many. A sweep
    /// runs by itself whenever a new key needs room, and otherwise at most once per idle timeout
    /// when a new key is created.
    ///
    /// Idleness is seen through sweeps, so that calls never read the clock for it: a call only
    /// marks its breaker as used, and a sweep treats a breaker used since the previous sweep as
    /// seen now. A breaker is therefore never evicted within the idle timeout of its last call,
    /// and is evicted by the first sweep at least one idle timeout after the first sweep that
    /// followed its last call.
    pub fn evict_idle(&self) -> usize {
        let mut map = self
            .inner
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.sweep(&mut map, self.now_ms())
    }

    fn sweep(&self, map: &mut HashMap<Arc<str>, Breaker>, now: u64) -> usize {
        self.inner.last_sweep.store(now, Relaxed);
        let idle = millis(self.inner.settings.idle_timeout);
        let before = map.len();
        map.retain(|_, breaker| {
            let inner = &breaker.inner;
            if inner.touched.swap(false, Relaxed) {
                inner.last_seen.store(now, Relaxed);
                return true;
            }
            let keep = now.saturating_sub(inner.last_seen.load(Relaxed)) < idle;
            if !keep {
                inner.evicted.store(true, Relaxed);
            }
            keep
        });
        before - map.len()
    }

    /// Every breaker of the scope (the overflow breaker included, once it exists).
    pub fn breakers(&self) -> Vec<Breaker> {
        let map = self
            .inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = map.values().cloned().collect();
        all.extend(self.inner.overflow.get().cloned());
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Breakers kept (the overflow breaker aside).
    pub fn len(&self) -> usize {
        self.inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no breaker was created yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
