//! The runtime around a [`Hysteresis`]: permits, overload publication, metrics, state-change logs,
//! and the timer that ends a deferred exit. Shared by the request and connection limiters.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use palisade_core::{
    BodyEnd, ConfigError, EnforcementMode, OnBodyEnd, OverloadSource, OverloadState, RatioScale,
};
use tokio::sync::Notify;

use crate::{
    config::Thresholds,
    hysteresis::{Hysteresis, RejectReason, Transition},
    metrics::{Kind, Metrics},
};

pub(crate) struct Limiter {
    state: Hysteresis,
    kind: Kind,
    name: Cow<'static, str>,
    mode: EnforcementMode,
    source: OverloadSource,
    /// `1 / max` in fixed point, for publishing utilisation without a division.
    scale: RatioScale,
    /// The count at the last publication, and how far it may drift before the next one.
    last_published: AtomicU32,
    publish_step: u32,
    metrics: Metrics,
    /// A timer is pending to end a deferred exit.
    recheck_pending: AtomicBool,
    /// Woken when shedding stops, for listeners that pause accepting.
    pub(crate) resumed: Notify,
}

pub(crate) struct LimiterSettings {
    pub(crate) kind: Kind,
    pub(crate) name: Cow<'static, str>,
    pub(crate) thresholds: Thresholds,
    pub(crate) dwell: Duration,
    pub(crate) critical_reserve: bool,
    pub(crate) mode: EnforcementMode,
    pub(crate) overload: Option<OverloadState>,
}

impl Limiter {
    pub(crate) fn new(settings: LimiterSettings) -> Result<Arc<Self>, ConfigError> {
        let overload = settings
            .overload
            .unwrap_or_else(|| OverloadState::global().clone());
        let source = overload.register(settings.name.clone())?;
        let limiter = Arc::new(Self {
            state: Hysteresis::new(
                settings.thresholds,
                settings.dwell,
                settings.critical_reserve,
            ),
            metrics: Metrics::new(
                settings.kind,
                &settings.name,
                settings.mode,
                &settings.thresholds,
            ),
            kind: settings.kind,
            name: settings.name,
            mode: settings.mode,
            source,
            scale: RatioScale::new(settings.thresholds.max),
            last_published: AtomicU32::new(0),
            publish_step: (settings.thresholds.max / 64).max(1),
            recheck_pending: AtomicBool::new(false),
            resumed: Notify::new(),
        });
        limiter.observe();
        Ok(limiter)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn mode(&self) -> EnforcementMode {
        self.mode
    }

    pub(crate) fn thresholds(&self) -> Thresholds {
        self.state.thresholds()
    }

    pub(crate) fn load(&self) -> (u32, bool) {
        self.state.load()
    }

    /// Takes a slot, or says why not. In observe-only mode every caller gets a slot and refusals
    /// are only counted and logged.
    pub(crate) fn acquire(self: &Arc<Self>, critical: bool) -> Result<Permit, RejectReason> {
        let acquired = self.state.acquire(critical, self.mode.enforces());
        if let Some(reason) = acquired.refused {
            self.metrics.rejected(reason);
        }
        if let Some(transition) = acquired.transition {
            self.report(transition, acquired.count);
        }
        self.observe_after(acquired.count, acquired.transition.is_some());
        match acquired.refused {
            Some(reason) if !acquired.counted => Err(reason),
            _ => Ok(Permit {
                limiter: Arc::clone(self),
            }),
        }
    }

    fn release(self: &Arc<Self>) {
        let released = self.state.release();
        if let Some(transition) = released.transition {
            self.report(transition, released.count);
        }
        self.observe_after(released.count, released.transition.is_some());
        if released.exit_deferred {
            self.schedule_recheck();
        }
    }

    /// Publishes after an operation that left `count` behind, unless nothing a reader would
    /// notice changed: the count moved less than 1/64 of the maximum since the last publication,
    /// no state changed, and the count is not zero. Readers see the level to within that step
    /// and the shedding flag and an idle limiter exactly, and the request path skips the
    /// publication most of the time.
    fn observe_after(&self, count: u32, transition: bool) {
        let last = self.last_published.load(Ordering::Relaxed);
        if transition || count == 0 || count.abs_diff(last) >= self.publish_step {
            self.observe();
        }
    }

    /// Publishes the state to the overload signal and the gauges. Concurrent callers may store in
    /// any order, so each re-reads the state afterwards and publishes again until it is stable:
    /// the last one to finish always publishes the latest state, and an idle limiter never shows
    /// a stale "shedding".
    fn observe(&self) {
        let mut seen = self.state.load();
        loop {
            let (count, shedding) = seen;
            self.last_published.store(count, Ordering::Relaxed);
            self.source.publish_ratio(count, self.scale, shedding);
            self.metrics.count.set(f64::from(count));
            self.metrics.state.set(if shedding { 1.0 } else { 0.0 });
            let now = self.state.load();
            if now == seen {
                return;
            }
            seen = now;
        }
    }

    #[cold]
    fn report(&self, transition: Transition, count: u32) {
        let Thresholds { max, high, low } = self.state.thresholds();
        let (name, noun) = (&*self.name, self.kind.noun());
        let observe_only = !self.mode.enforces();
        match transition {
            Transition::StartedShedding => tracing::warn!(
                limiter = name,
                count,
                high_water = high,
                low_water = low,
                max,
                observe_only,
                "{noun} reached the high-water mark: shedding until they fall to the low-water mark"
            ),
            Transition::StoppedShedding => {
                tracing::info!(
                    limiter = name,
                    count,
                    low_water = low,
                    observe_only,
                    "{noun} fell to the low-water mark: accepting again"
                );
                self.resumed.notify_waiters();
            }
        }
    }

    /// Ends a deferred exit when the dwell time is over, even if no request arrives to notice:
    /// an idle limiter must not keep reporting overload (readiness would fail forever).
    fn schedule_recheck(self: &Arc<Self>) {
        if self.recheck_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a synchronous caller): the next arrival ends the shedding instead.
            self.recheck_pending.store(false, Ordering::Release);
            return;
        };
        let limiter = Arc::clone(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep_until(limiter.state.dwell_deadline()).await;
                if let Some(transition) = limiter.state.try_stop_shedding() {
                    limiter.report(transition, limiter.state.load().0);
                }
                limiter.observe();
                limiter.recheck_pending.store(false, Ordering::Release);
                // A release may have deferred another exit while this timer was pending.
                let (count, shedding) = limiter.state.load();
                let deferred = shedding && count <= limiter.state.thresholds().low;
                if !deferred || limiter.recheck_pending.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }
}

/// A slot in a limiter, released when dropped. As a completion guard it is released when the
/// response body ends (see [`palisade_core::ResponseBody`]).
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("limiter", &self.limiter.name())
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

impl OnBodyEnd for Permit {
    fn on_body_end(self, _end: BodyEnd) {
        drop(self);
    }
}

/// A read-only view of a limiter, for status pages and tests.
#[derive(Clone)]
pub struct LimiterHandle {
    pub(crate) limiter: Arc<Limiter>,
}

impl std::fmt::Debug for LimiterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (count, shedding) = self.limiter.load();
        f.debug_struct("LimiterHandle")
            .field("name", &self.limiter.name())
            .field("count", &count)
            .field("shedding", &shedding)
            .finish()
    }
}

impl LimiterHandle {
    /// The limiter's name.
    pub fn name(&self) -> &str {
        self.limiter.name()
    }

    /// Requests in flight (or open connections) right now.
    pub fn count(&self) -> u32 {
        self.limiter.load().0
    }

    /// Whether the limiter is shedding (refusing all but critical callers).
    pub fn is_shedding(&self) -> bool {
        self.limiter.load().1
    }

    /// The resolved thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.limiter.thresholds()
    }

    /// Enforcing or observing.
    pub fn mode(&self) -> EnforcementMode {
        self.limiter.mode()
    }
}
