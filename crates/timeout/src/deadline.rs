//! The layer's shared state: the timeout, the prepared answer, the metric handle and the log cap.
//! Built once per layer; every service and future holds an `Arc` of it.

use std::{sync::Once, time::Duration};

use http::Response;
use palisade_core::{ConfigError, EventLimiter, Rejection, ResponseBody};

use crate::{config::TimeoutConfig, metrics::Metrics};

#[derive(Debug)]
pub(crate) struct Deadline {
    pub(crate) config: TimeoutConfig,
    rejection: Rejection,
    metrics: Metrics,
    /// At most ten timeout events a second are written; the metric counts them all.
    events: EventLimiter,
    /// Whether the runtime's timer has been checked (see [`Deadline::check_timer_driver`]).
    timer_checked: Once,
}

impl Deadline {
    pub(crate) fn new(config: TimeoutConfig) -> Result<Self, ConfigError> {
        let status = config.validate()?;
        let rejection = Rejection::builder(status, "timeout")
            .detail("The request took longer than the server allows and was abandoned.")
            .build()?;
        Ok(Self {
            rejection,
            // Registered (and described) now, so the recorder knows the metric before the first
            // timeout and counting one formats no labels.
            metrics: Metrics::new(config.mode),
            events: EventLimiter::default(),
            timer_checked: Once::new(),
            config,
        })
    }

    /// Tokio panics when a timer is made on a runtime without its time driver. This layer makes
    /// one only for requests that wait, so without this check a misconfigured runtime would serve
    /// fast requests and panic on the first slow one; with it, the first request through the
    /// layer finds out, as with tower-http's timeout. After the first call, one atomic load.
    #[inline]
    pub(crate) fn check_timer_driver(&self) {
        self.timer_checked
            .call_once(|| drop(tokio::time::sleep(Duration::ZERO)));
    }

    /// Counts and logs a request whose timeout passed, once per request. `Some` answer when
    /// enforcing; `None` when observe-only mode lets the request finish.
    #[inline(never)]
    #[cold]
    pub(crate) fn expired<B>(&self) -> Option<Response<ResponseBody<B>>> {
        self.metrics.expired();
        let timeout_ms = u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX);
        // The request's span (request id, route) is current while its future is polled, so the
        // event carries them without this layer reading the request.
        if let Some(suppressed) = self.events.admit() {
            if self.config.mode.enforces() {
                tracing::warn!(
                    event = "request_timed_out",
                    timeout_ms,
                    status = self.rejection.status().as_u16(),
                    suppressed,
                    "request timed out; its handler was dropped"
                );
            } else {
                tracing::warn!(
                    event = "request_timed_out_observed",
                    timeout_ms,
                    suppressed,
                    "request overran its timeout (observe-only, left to finish)"
                );
            }
        }
        self.config
            .mode
            .enforces()
            .then(|| self.rejection.response())
    }
}
