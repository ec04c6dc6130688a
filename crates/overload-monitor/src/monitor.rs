//! The [`Monitor`] trait, and the sampling loop that turns readings into pressure levels and
//! publishes them into the shared overload state.

use std::{fmt, io, time::Duration};

use metrics::Gauge;
use palisade_core::{EnforcementMode, OverloadSource, OverloadState};
use tokio::{task::JoinHandle, time::Instant};

use crate::{
    metrics::{ACTIONS, ResourceMetrics},
    pressure::{Pressure, PressureHandle, Thresholds, Tracker},
};

/// One reading of a resource: how much is used of how much there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Used (bytes, descriptors, nanoseconds of lag).
    pub used: u64,
    /// What counts as full; 0 reads as full.
    pub limit: u64,
}

impl Reading {
    /// `used` of `limit`.
    pub const fn new(used: u64, limit: u64) -> Self {
        Self { used, limit }
    }

    /// `used / limit`, 1 or more when full or over.
    #[allow(clippy::cast_precision_loss)] // a ratio: 52 bits of precision are plenty
    pub fn ratio(&self) -> f64 {
        if self.limit == 0 {
            return 1.0;
        }
        self.used as f64 / self.limit as f64
    }
}

/// A resource to watch. Implement it for your own (a connection pool's checked-out share, a
/// queue's depth) and add it with
/// [`OverloadMonitorBuilder::monitor`](crate::OverloadMonitorBuilder::monitor).
pub trait Monitor: Send + 'static {
    /// The `resource` label and the overload source's name (`memory`, `fds`, `lag`).
    fn name(&self) -> &'static str;

    /// Starts any background work, on the runtime the monitors run on. Called once, before the
    /// first [`read`](Monitor::read).
    fn start(&mut self) {}

    /// Reads the resource now. `Ok(None)`: nothing to compare with (no limit configured), which
    /// counts as no pressure. Errors are logged once until a read succeeds again, and leave the
    /// level where it was.
    ///
    /// # Errors
    ///
    /// When the resource cannot be read (a file is missing or unreadable).
    fn read(&mut self) -> io::Result<Option<Reading>>;
}

/// What the monitors publish into the overload state at each level: the levels the priority
/// shedder reads, chosen for its default band (0.5 to 0.8: `Sheddable` is shed entirely from 0.6,
/// `SheddablePlus` from 0.7, `Critical` from 0.8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Published {
    pub(crate) warn: f64,
    pub(crate) degrade: f64,
}

impl Published {
    fn of(self, pressure: Pressure, ratio: f64) -> (f64, bool) {
        match pressure {
            Pressure::Normal => (0.0, false),
            Pressure::Warn => (self.warn, false),
            Pressure::Degrade => (self.degrade, false),
            // "Overloaded": the shedder sheds everything but `CriticalPlus` at once whatever the
            // level, and readiness fails, naming the resource with its ratio as the observed
            // value, so the load balancer sends new work elsewhere.
            Pressure::Critical => (ratio, true),
        }
    }
}

pub(crate) struct Watched {
    pub(crate) monitor: Box<dyn Monitor>,
    pub(crate) tracker: Tracker,
    pub(crate) source: OverloadSource,
    pub(crate) metrics: ResourceMetrics,
    /// A read failed and was logged; quiet until one succeeds.
    pub(crate) failing: bool,
    /// The last ratio read.
    pub(crate) ratio: f64,
}

impl Watched {
    pub(crate) fn new(
        monitor: Box<dyn Monitor>,
        thresholds: Thresholds,
        state: &OverloadState,
        mode: EnforcementMode,
    ) -> Result<Self, palisade_core::ConfigError> {
        let name = monitor.name();
        Ok(Self {
            source: state.register(name)?,
            metrics: ResourceMetrics::new(name, mode.label()),
            tracker: Tracker::new(thresholds),
            monitor,
            failing: false,
            ratio: 0.0,
        })
    }
}

/// The built monitors, ready to run: [`OverloadMonitor::spawn`] starts them.
pub struct OverloadMonitor {
    pub(crate) watched: Vec<Watched>,
    pub(crate) interval: Duration,
    pub(crate) enforce: bool,
    pub(crate) published: Published,
    pub(crate) actions: [Gauge; 3],
    pub(crate) pressure: PressureHandle,
}

impl fmt::Debug for OverloadMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadMonitor")
            .field(
                "resources",
                &self
                    .watched
                    .iter()
                    .map(|w| w.monitor.name())
                    .collect::<Vec<_>>(),
            )
            .field("interval", &self.interval)
            .field("enforce", &self.enforce)
            .finish_non_exhaustive()
    }
}

/// The running monitors. Dropping it stops them; their overload sources are withdrawn when the
/// runtime drops the stopped task, at once with [`MonitorHandle::stop`].
#[derive(Debug)]
#[must_use = "dropping the handle stops the monitors"]
pub struct MonitorHandle {
    task: Option<JoinHandle<()>>,
}

impl MonitorHandle {
    /// Stops the monitors and waits until their overload sources are withdrawn.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Cancelled, as asked: nothing to report.
            let _ = task.await;
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl OverloadMonitor {
    /// The worst level of the watched resources, updated at every sample (always normal in
    /// observe-only mode): for [`CloseConnectionsLayer`](crate::CloseConnectionsLayer).
    pub fn pressure(&self) -> PressureHandle {
        self.pressure.clone()
    }

    /// The resources watched, by name.
    pub fn resources(&self) -> Vec<&'static str> {
        self.watched.iter().map(|w| w.monitor.name()).collect()
    }

    /// Starts sampling every `interval` on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as `tokio::spawn` does.
    pub fn spawn(mut self) -> MonitorHandle {
        for watched in &mut self.watched {
            watched.monitor.start();
        }
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.sample(Instant::now());
            }
        });
        MonitorHandle { task: Some(task) }
    }

    /// Reads every resource once at `now`, updates the levels, publishes them.
    pub(crate) fn sample(&mut self, now: Instant) {
        let mut worst = Pressure::Normal;
        let mut worst_resource = None;
        for watched in &mut self.watched {
            let name = watched.monitor.name();
            match watched.monitor.read() {
                Ok(reading) => {
                    if std::mem::take(&mut watched.failing) {
                        tracing::info!(resource = name, "overload monitor reads again");
                    }
                    let ratio = reading.map_or(0.0, |r| r.ratio());
                    watched.ratio = ratio;
                    watched.metrics.ratio.set(ratio);
                    if let Some(old) = watched.tracker.observe(ratio, now) {
                        log_transition(name, old, watched.tracker.level(), ratio, self.enforce);
                    }
                }
                Err(error) => {
                    if !std::mem::replace(&mut watched.failing, true) {
                        tracing::warn!(
                            resource = name,
                            %error,
                            "overload monitor cannot read its resource; keeping its last level"
                        );
                    }
                }
            }
            let level = watched.tracker.level();
            watched.metrics.pressure.set(f64::from(level.index()));
            let (published, overloaded) = if self.enforce {
                self.published.of(level, watched.ratio)
            } else {
                (0.0, false)
            };
            watched.source.publish(published, overloaded);
            if level > worst {
                worst_resource = Some((name, watched.ratio));
            }
            worst = worst.max(level);
        }
        if self.enforce {
            self.pressure.set(worst);
            self.pressure.set_worst(worst_resource);
        } else {
            self.pressure.set(Pressure::Normal);
            self.pressure.set_worst(None);
        }
        for (gauge, (_, from)) in self.actions.iter().zip(ACTIONS) {
            gauge.set(if self.enforce && worst >= from {
                1.0
            } else {
                0.0
            });
        }
    }
}

fn log_transition(resource: &str, old: Pressure, new: Pressure, ratio: f64, enforce: bool) {
    let mode = if enforce { "enforce" } else { "observe_only" };
    if new > old {
        tracing::warn!(
            resource,
            from = old.as_str(),
            to = new.as_str(),
            ratio,
            mode,
            "resource pressure rose"
        );
    } else {
        tracing::info!(
            resource,
            from = old.as_str(),
            to = new.as_str(),
            ratio,
            mode,
            "resource pressure eased"
        );
    }
}
