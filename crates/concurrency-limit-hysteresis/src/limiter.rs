//! The runtime around a [`Hysteresis`]: permits, overload publication, metrics, state-change logs,
//! and the timer that ends a deferred exit. Shared by the request and connection limiters.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use palisade_core::{
    BodyEnd, ConfigError, EnforcementMode, OnBodyEnd, OverloadSource, OverloadState, RatioScale,
    Rejection,
};
use tokio::sync::Notify;

use crate::{
    config::Thresholds,
    hysteresis::{Hysteresis, Publication, RejectReason, Transition},
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
    /// What the overload signal and the gauges show; republished when the count moved 1/64 of
    /// the maximum, the shedding flag changed, or the count fell to zero.
    published: Publication,
    metrics: Metrics,
    /// A timer is pending to end a deferred exit.
    recheck_pending: AtomicBool,
    /// Woken when shedding stops, for listeners that pause accepting.
    pub(crate) resumed: Notify,
    /// The answer to a refused request (request limiters only; listeners write their own).
    rejection: Option<Rejection>,
}

pub(crate) struct LimiterSettings {
    pub(crate) kind: Kind,
    pub(crate) name: Cow<'static, str>,
    pub(crate) thresholds: Thresholds,
    pub(crate) dwell: Duration,
    pub(crate) critical_reserve: bool,
    pub(crate) mode: EnforcementMode,
    pub(crate) overload: Option<OverloadState>,
    pub(crate) rejection: Option<Rejection>,
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
            published: Publication::new(settings.thresholds.max / 64),
            recheck_pending: AtomicBool::new(false),
            resumed: Notify::new(),
            rejection: settings.rejection,
        });
        limiter.publish();
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

    /// The answer to a refused request.
    ///
    /// # Panics
    ///
    /// For a connection limiter, which has none.
    pub(crate) fn rejection(&self) -> &Rejection {
        self.rejection
            .as_ref()
            .expect("a request limiter has a rejection")
    }

    /// The common case of [`acquire`](Self::acquire): accepting and below the high-water mark,
    /// where the caller's priority and the mode do not matter. One compare-and-swap, a check
    /// whether to publish, and the permit; `None` when [`acquire`](Self::acquire) must decide.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let count = self.state.try_acquire()?;
        self.publish_if_stale(count, false);
        Some(Permit {
            limiter: Arc::clone(self),
        })
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
        self.publish_if_current_stale();
        match acquired.refused {
            Some(reason) if !acquired.counted => Err(reason),
            _ => Ok(Permit {
                limiter: Arc::clone(self),
            }),
        }
    }

    #[inline]
    fn release(self: &Arc<Self>) {
        // Accepting (the common case): no state change and no deferred exit can follow.
        match self.state.try_release() {
            Some(count) => self.publish_if_stale(count, false),
            None => self.release_slow(),
        }
    }

    #[inline(never)]
    fn release_slow(self: &Arc<Self>) {
        let released = self.state.release();
        if let Some(transition) = released.transition {
            self.report(transition, released.count);
        }
        self.publish_if_current_stale();
        if released.exit_deferred {
            self.schedule_recheck();
        }
    }

    /// Publishes after an operation that left `count` and `shedding` behind, unless readers
    /// already see them closely enough (see [`Publication`]): most requests publish nothing.
    #[inline]
    fn publish_if_stale(&self, count: u32, shedding: bool) {
        if self.published.is_stale(count, shedding) {
            self.publish();
        }
    }

    fn publish_if_current_stale(&self) {
        let (count, shedding) = self.state.load();
        self.publish_if_stale(count, shedding);
    }

    /// Publishes the state to the overload signal and the gauges (one caller at a time; see
    /// [`Publication::publish`]). An idle limiter never shows a stale level or "shedding".
    #[inline(never)]
    fn publish(&self) {
        self.published.publish(&self.state, |count, shedding| {
            self.source.publish_ratio(count, self.scale, shedding);
            self.metrics.count.set(f64::from(count));
            self.metrics.state.set(if shedding { 1.0 } else { 0.0 });
        });
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
                limiter.publish();
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
    #[inline]
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
