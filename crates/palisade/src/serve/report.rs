//! What the server counted, and the final report of a shutdown.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use palisade_health::DrainOutcome;
use tokio::time::Instant;

/// How a server's shutdown went: what was in flight when it stopped accepting, what finished
/// during the drain and what the deadline cut off. [`serve`](crate::serve) logs it and returns
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ServeReport {
    /// Whether everything finished before the deadline.
    pub outcome: DrainOutcome,
    /// Connections open when the server stopped accepting.
    pub connections_at_stop: usize,
    /// Requests in flight (response not yet fully sent) when the server stopped accepting.
    pub requests_at_stop: usize,
    /// Requests that finished after the server stopped accepting.
    pub requests_completed_during_drain: u64,
    /// Connections still open at the deadline, closed without a response finishing.
    pub connections_cut: usize,
    /// Requests still in flight at the deadline, cut off.
    pub requests_cut: usize,
    /// From the moment the server stopped accepting to the end.
    pub drain_duration: Duration,
}

impl fmt::Display for ServeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            outcome,
            connections_at_stop,
            requests_at_stop,
            requests_completed_during_drain,
            connections_cut,
            requests_cut,
            drain_duration,
        } = *self;
        let secs = drain_duration.as_secs_f64();
        match outcome {
            DrainOutcome::Drained => write!(
                f,
                "drained in {secs:.2} s: {requests_at_stop} requests in flight on \
                 {connections_at_stop} connections when accepting stopped, \
                 {requests_completed_during_drain} completed, none cut off"
            ),
            DrainOutcome::DeadlineExceeded => write!(
                f,
                "drain deadline passed after {secs:.2} s: {requests_at_stop} requests in flight \
                 on {connections_at_stop} connections when accepting stopped, \
                 {requests_completed_during_drain} completed, {requests_cut} requests on \
                 {connections_cut} connections cut off"
            ),
        }
    }
}

/// Server-wide counts, shared by the accept loop and every connection.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    connections: AtomicUsize,
    requests: AtomicUsize,
    completed: AtomicU64,
    stopped: Mutex<Option<Stopped>>,
}

#[derive(Debug, Clone, Copy)]
struct Stopped {
    at: Instant,
    connections: usize,
    requests: usize,
    completed: u64,
}

/// Counts a connection as open until dropped (also when its task is aborted).
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Counters>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    pub(crate) fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_ended(&self) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes the moment the server stopped accepting.
    pub(crate) fn stopped_accepting(&self) {
        let stopped = Stopped {
            at: Instant::now(),
            connections: self.connections.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
        };
        *self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stopped);
    }

    /// The report, read when the drain ended: what is still open now was cut off.
    pub(crate) fn report(&self, outcome: DrainOutcome) -> ServeReport {
        let now = Instant::now();
        let stopped = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or(Stopped {
                at: now,
                connections: 0,
                requests: 0,
                completed: self.completed.load(Ordering::Relaxed),
            });
        let cut = outcome == DrainOutcome::DeadlineExceeded;
        ServeReport {
            outcome,
            connections_at_stop: stopped.connections,
            requests_at_stop: stopped.requests,
            requests_completed_during_drain: self.completed.load(Ordering::Relaxed)
                - stopped.completed,
            connections_cut: if cut {
                self.connections.load(Ordering::Relaxed)
            } else {
                0
            },
            requests_cut: if cut {
                self.requests.load(Ordering::Relaxed)
            } else {
                0
            },
            drain_duration: now - stopped.at,
        }
    }
}
