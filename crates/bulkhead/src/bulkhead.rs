//! [`BulkheadPool`]: one named pool of slots with its wait queue, shared by every clone.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::StatusCode;
use palisade_core::{BodyEnd, ConfigError, OnBodyEnd, Priority, Rejection, RetryAfter, sync::Arc};
use tokio::time::{Instant, Sleep};

use crate::{
    config::BulkheadConfig,
    metrics::Metrics,
    queue::{Admission, Ticket, WaitQueue, WaitState},
};

/// Why a bulkhead refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Every slot was taken and the wait queue was full (or waiting is disabled), or, with
    /// priority ordering, the request was waiting and a higher class took its queue place.
    QueueFull,
    /// The request waited `max_wait` without getting a slot.
    WaitTimeout,
}

impl RejectReason {
    /// The `reason` label of `palisade_bulkhead_rejected_total`: `queue_full` or `wait_timeout`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::WaitTimeout => "wait_timeout",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named bulkhead: `max_concurrent` slots and a bounded wait queue.
///
/// Cloning is cheap and shares the state: every clone, and every service of a
/// [`BulkheadLayer`](crate::BulkheadLayer) built from it, enforces the same slots.
/// Usable without HTTP through [`acquire`](Self::acquire):
///
/// ```
/// use palisade_bulkhead::{BulkheadPool, BulkheadConfig, RejectReason};
/// use palisade_core::Priority;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let db = BulkheadPool::new({
///     let mut config = BulkheadConfig::named("db");
///     config.max_concurrent = 1;
///     config.max_queued = 0;
///     config
/// })
/// .unwrap();
/// let permit = db.acquire(Priority::Critical).await.unwrap();
/// assert_eq!(db.in_flight(), 1);
/// assert_eq!(db.acquire(Priority::Critical).await.unwrap_err(), RejectReason::QueueFull);
/// drop(permit);
/// assert_eq!(db.in_flight(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct BulkheadPool {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: BulkheadConfig,
    pub(crate) queue: WaitQueue,
    queue_full: Rejection,
    wait_timeout: Rejection,
}

impl fmt::Debug for BulkheadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

fn rejection(config: &BulkheadConfig, reason: RejectReason) -> Result<Rejection, ConfigError> {
    let (problem, detail) = match reason {
        RejectReason::QueueFull => (
            "bulkhead_queue_full",
            "Every slot of this bulkhead is taken and its wait queue is full. Retry after the delay in Retry-After.",
        ),
        RejectReason::WaitTimeout => (
            "bulkhead_wait_timeout",
            "No slot of this bulkhead became free in time. Retry after the delay in Retry-After.",
        ),
    };
    Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, problem)
        .title("Service Unavailable")
        .detail(detail)
        .extension("bulkhead", config.name.as_ref())
        .extension("cause", reason.as_str())
        .retry_after(RetryAfter::new(config.retry_after).with_jitter(config.retry_after_jitter))
        .build()
}

impl BulkheadPool {
    /// A bulkhead with `config`. Metric handles are registered here: install the metrics recorder
    /// first.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see [`BulkheadConfig::validate`]).
    pub fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let queue_full = rejection(&config, RejectReason::QueueFull)?;
        let wait_timeout = rejection(&config, RejectReason::WaitTimeout)?;
        let metrics = Metrics::new(&config.name, config.mode);
        let queue = WaitQueue::with_metrics(
            config.max_concurrent,
            if config.queues() {
                config.max_queued
            } else {
                0
            },
            config.priority_ordering,
            metrics,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                queue,
                queue_full,
                wait_timeout,
            }),
        })
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Its (validated) configuration.
    pub fn config(&self) -> &BulkheadConfig {
        &self.inner.config
    }

    /// Slots held now (in observe-only mode this may exceed `max_concurrent`).
    pub fn in_flight(&self) -> u32 {
        self.inner.queue.load().0
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.inner.queue.load().1
    }

    /// The prepared 503 for `reason`.
    pub fn rejection(&self, reason: RejectReason) -> &Rejection {
        match reason {
            RejectReason::QueueFull => &self.inner.queue_full,
            RejectReason::WaitTimeout => &self.inner.wait_timeout,
        }
    }

    /// Takes a slot, waiting up to `max_wait` in the queue (ordered by `priority` when
    /// `priority_ordering` is on, FIFO otherwise; then a higher class may also evict a waiter
    /// from a full queue, which resolves to [`RejectReason::QueueFull`]). Dropping the future
    /// leaves the queue at once.
    ///
    /// In observe-only mode the future is ready at once with a permit; what would have been
    /// refused is counted with `mode="observe_only"`.
    pub fn acquire(&self, priority: Priority) -> Acquire {
        let inner = &self.inner;
        let state = if inner.config.mode.enforces() {
            match inner.queue.acquire_or_enqueue(priority) {
                Admission::Acquired => AcquireState::Ready(Some(Ok(self.permit()))),
                Admission::Full => {
                    inner.queue.metrics().rejected(RejectReason::QueueFull);
                    AcquireState::Ready(Some(Err(RejectReason::QueueFull)))
                }
                Admission::Queued(ticket) => AcquireState::Waiting {
                    bulkhead: self.clone(),
                    ticket,
                    started: Instant::now(),
                    deadline: Box::pin(tokio::time::sleep(inner.config.max_wait)),
                },
            }
        } else {
            if inner.queue.acquire_unchecked() {
                inner.queue.metrics().rejected(RejectReason::QueueFull);
                tracing::trace!(bulkhead = %inner.config.name, "bulkhead full (observe-only): admitted");
            }
            AcquireState::Ready(Some(Ok(self.permit())))
        };
        Acquire { state }
    }

    /// Takes a slot if one is free and nobody waits, without waiting (lock-free). `None` in
    /// observe-only mode, where [`acquire`](Self::acquire) never waits anyway.
    pub fn try_acquire(&self) -> Option<Permit> {
        (self.inner.config.mode.enforces() && self.inner.queue.try_acquire()).then(|| self.permit())
    }

    fn permit(&self) -> Permit {
        Permit {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// The future of [`BulkheadPool::acquire`]: a [`Permit`], or why the bulkhead refused.
///
/// Dropping it while it waits removes it from the queue at once; a slot handed to it in the
/// meantime is passed on to the next waiter, never leaked.
#[must_use = "the request waits in the queue until this future is polled to completion or dropped"]
pub struct Acquire {
    state: AcquireState,
}

enum AcquireState {
    Ready(Option<Result<Permit, RejectReason>>),
    Waiting {
        bulkhead: BulkheadPool,
        ticket: Ticket,
        started: Instant,
        deadline: Pin<Box<Sleep>>,
    },
    Done,
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            AcquireState::Ready(_) => "ready",
            AcquireState::Waiting { .. } => "waiting",
            AcquireState::Done => "done",
        };
        f.debug_struct("Acquire").field("state", &state).finish()
    }
}

impl Acquire {
    /// The result if it was decided without waiting (a free slot, or a full queue).
    pub(crate) fn take_ready(&mut self) -> Option<Result<Permit, RejectReason>> {
        match &mut self.state {
            AcquireState::Ready(result) => {
                let result = result.take();
                self.state = AcquireState::Done;
                result
            }
            _ => None,
        }
    }

    /// Whether the request is waiting in the queue.
    pub fn is_waiting(&self) -> bool {
        matches!(self.state, AcquireState::Waiting { .. })
    }
}

impl Future for Acquire {
    type Output = Result<Permit, RejectReason>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = match &mut this.state {
            AcquireState::Ready(result) => result.take().expect("Acquire polled after completion"),
            AcquireState::Waiting {
                bulkhead,
                ticket,
                started,
                deadline,
            } => {
                let queue = &bulkhead.inner.queue;
                let outcome = match queue.poll_ticket(*ticket, cx.waker()) {
                    WaitState::Waiting if deadline.as_mut().poll(cx).is_ready() => {
                        // A slot handed over (or an eviction) at the last moment wins over the
                        // timeout.
                        queue.expire(*ticket)
                    }
                    WaitState::Waiting => return Poll::Pending,
                    decided => decided,
                };
                queue.metrics().wait.record(started.elapsed().as_secs_f64());
                match outcome {
                    WaitState::Granted => Ok(bulkhead.permit()),
                    // Counted by the queue when it evicted us, so that a waiter dropped before it
                    // learns of it is counted too.
                    WaitState::Evicted => Err(RejectReason::QueueFull),
                    WaitState::Waiting => {
                        queue.metrics().rejected(RejectReason::WaitTimeout);
                        Err(RejectReason::WaitTimeout)
                    }
                }
            }
            AcquireState::Done => panic!("Acquire polled after completion"),
        };
        this.state = AcquireState::Done;
        Poll::Ready(result)
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let AcquireState::Waiting {
            bulkhead, ticket, ..
        } = &self.state
        {
            bulkhead.inner.queue.abandon(*ticket);
        }
    }
}

/// A bulkhead slot. Released when dropped; as a response body guard, when the body ends.
pub struct Permit {
    // Not an `Option`: the null niche stays free, so `Option<Permit>` (in the response future and
    // the body guard) is one pointer wide.
    inner: Arc<Inner>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.queue.release();
    }
}

impl OnBodyEnd for Permit {
    fn on_body_end(self, _end: BodyEnd) {
        drop(self);
    }
}
