//! Security events: the log target, and a cap on how many of one kind are written per second.

use std::{sync::Mutex, time::Instant};

/// The `tracing` target of security events: one structured event per request refused by the
/// request guard, a rate limit or the admin token, with a stable `event` name and a `reason`, so
/// that operators can alert on them from logs as well as from metrics (and route or silence them:
/// `RUST_LOG=palisade::security=warn`). Each kind is capped by an [`EventLimiter`].
pub const SECURITY_TARGET: &str = "palisade::security";

/// Caps how many events of one kind are written per second and counts the others, so that a
/// flood of refused requests (which an attacker controls) cannot turn a cheap refusal into a
/// synchronous write each: the first `per_second` events of each second are written, the next
/// one written carries how many were left out (`suppressed`), and the metrics count them all.
///
/// ```
/// use palisade_core::EventLimiter;
///
/// let limiter = EventLimiter::new(2);
/// assert_eq!(limiter.admit(), Some(0));
/// assert_eq!(limiter.admit(), Some(0));
/// assert_eq!(limiter.admit(), None); // the third in this second: counted, not written
/// ```
#[derive(Debug)]
pub struct EventLimiter {
    per_second: u32,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl EventLimiter {
    /// Writes at most `per_second` events a second (0: none).
    pub const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            state: Mutex::new(Window {
                start: None,
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(suppressed)` when this event may be written, with how many were left out since the
    /// last one written; `None` when it is over the cap (and is counted).
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        // A panic cannot leave these counters half-written: keep going.
        let mut window = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if window
            .start
            .is_none_or(|start| now.saturating_duration_since(start).as_secs() >= 1)
        {
            window.start = Some(now);
            window.written = 0;
        }
        if window.written < self.per_second {
            window.written += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}

impl Default for EventLimiter {
    /// Ten events a second.
    fn default() -> Self {
        Self::new(10)
    }
}
