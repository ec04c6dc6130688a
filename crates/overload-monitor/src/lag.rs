//! Runtime lag: how late a periodic task on the Tokio runtime wakes. A runtime whose workers are
//! all busy (CPU-bound handlers, blocking calls, a starved container) shows it here before
//! request latency does, and before any queue fills.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use crate::monitor::{Monitor, Reading};

/// The worst wake-up lateness since the last sample against `max_lag`, as a [`Monitor`] named
/// `lag`. Its probe task starts when the monitors are spawned, on their runtime.
#[derive(Debug)]
pub struct LagMonitor {
    max_lag: Duration,
    probe_interval: Duration,
    worst_nanos: Arc<AtomicU64>,
    probe: Option<JoinHandle<()>>,
}

impl LagMonitor {
    /// A probe that sleeps `probe_interval` at a time; a lateness of `max_lag` counts as full.
    pub fn new(max_lag: Duration, probe_interval: Duration) -> Self {
        Self {
            max_lag,
            probe_interval,
            worst_nanos: Arc::new(AtomicU64::new(0)),
            probe: None,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Monitor for LagMonitor {
    fn name(&self) -> &'static str {
        "lag"
    }

    fn start(&mut self) {
        let (worst, period) = (Arc::clone(&self.worst_nanos), self.probe_interval);
        self.probe = Some(tokio::spawn(async move {
            loop {
                let asleep = Instant::now();
                tokio::time::sleep(period).await;
                let late = asleep.elapsed().saturating_sub(period);
                worst.fetch_max(nanos(late), Ordering::Relaxed);
            }
        }));
    }

    fn read(&mut self) -> io::Result<Option<Reading>> {
        if self.probe.is_none() {
            return Ok(None);
        }
        let worst = self.worst_nanos.swap(0, Ordering::Relaxed);
        Ok(Some(Reading::new(worst, nanos(self.max_lag))))
    }
}

impl Drop for LagMonitor {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
    }
}
