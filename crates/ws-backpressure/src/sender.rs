//! The shared state of one connection (its [`Queue`] behind a mutex, plus wake-ups and metrics)
//! and [`Sender`], the cheap, cloneable producer handle.
//!
//! A plain `std::sync::Mutex` guards the queue: every critical section is a few pointer moves
//! (no I/O, no allocation beyond the `VecDeque`'s growth, nothing awaited), so it is held for
//! tens of nanoseconds, and it keeps the byte/message accounting and the hysteresis exactly
//! consistent, which a lock-free queue would make much harder to reason about.

use std::{
    fmt,
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::extract::ws::{CloseFrame, Message};
use tokio::{sync::Notify, time::Instant};

use crate::{
    config::{BackpressureConfig, SlowClientAction},
    metrics::Metrics,
    queue::{CloseReason, Discarded, DropReason, Limits, Pushed, Queue, QueueStats, SendOutcome},
};

/// What every queue of one configuration shares: the configuration and the metric handles.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) config: BackpressureConfig,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
}

impl Core {
    pub(crate) fn new(config: BackpressureConfig) -> Self {
        Self {
            limits: Limits::new(&config),
            metrics: Metrics::new(&config.name, config.mode),
            config,
        }
    }

    fn slow_client_frame(&self) -> CloseFrame {
        CloseFrame {
            code: self.config.slow_client_close_code,
            reason: self.config.slow_client_close_reason.as_ref().into(),
        }
    }
}

/// One connection's state, shared by its [`Sender`]s, its writer and its receiver.
#[derive(Debug)]
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    pub(crate) core: Arc<Core>,
    /// Wakes the writer (one waiter; a wake-up before it waits is kept as a permit).
    pub(crate) writer: Notify,
    /// Backpressure released or the queue started closing: wakes `send().await`, `closed()` and
    /// the receiver, which re-check the state.
    pub(crate) changed: Notify,
    senders: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(core: Arc<Core>) -> Arc<Self> {
        core.metrics.connections.increment(1);
        Arc::new(Self {
            queue: Mutex::new(Queue::new(core.limits)),
            core,
            writer: Notify::new(),
            changed: Notify::new(),
            senders: AtomicUsize::new(1),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-updated in a way that
        // matters more than losing the connection; keep serving rather than poisoning every user.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pushes under the lock, then applies metrics and wake-ups outside it.
    pub(crate) fn push(&self, message: Message, key: Option<u64>, now: Instant) -> SendOutcome {
        if let Message::Close(frame) = message {
            // Closing also discards the data lane, which `close` accounts for.
            return if self.close(CloseReason::ServerClosed, frame) {
                SendOutcome::Queued
            } else {
                SendOutcome::Closed
            };
        }
        let pushed = self.lock().push(message, key, now);
        self.after_push(&pushed);
        pushed.outcome
    }

    pub(crate) fn after_push(&self, pushed: &Pushed) {
        let metrics = &self.core.metrics;
        if pushed.bytes_delta > 0 {
            metrics
                .buffered_bytes
                .increment(crate::metrics::gauge_bytes(
                    pushed.bytes_delta.unsigned_abs(),
                ));
        } else if pushed.bytes_delta < 0 {
            metrics
                .buffered_bytes
                .decrement(crate::metrics::gauge_bytes(
                    pushed.bytes_delta.unsigned_abs(),
                ));
        }
        if let Some((reason, messages)) = pushed.dropped {
            metrics.dropped(reason, messages);
        }
        if pushed.backpressure_started {
            metrics.backpressured.increment(1);
        }
        if pushed.wake_writer {
            self.writer.notify_one();
        }
    }

    /// Starts closing (once); returns whether this call did.
    pub(crate) fn close(&self, reason: CloseReason, frame: Option<CloseFrame>) -> bool {
        let discarded = self.lock().close(reason, frame);
        match discarded {
            Some(discarded) => {
                self.after_close(discarded);
                true
            }
            None => false,
        }
    }

    fn after_close(&self, discarded: Discarded) {
        let metrics = &self.core.metrics;
        metrics
            .buffered_bytes
            .decrement(crate::metrics::gauge_bytes(discarded.bytes));
        if discarded.messages > 0 {
            metrics.dropped(DropReason::Disconnected, discarded.messages);
        }
        if discarded.was_backpressured {
            metrics.backpressured.decrement(1);
        }
        self.writer.notify_one();
        self.changed.notify_waiters();
    }

    /// Checks the slow-client clock at `now` and acts on a verdict. Returns whether the queue is
    /// now closing (the writer must stop what it is doing and write the close frame).
    pub(crate) fn check_slow(&self, now: Instant) -> bool {
        let mut queue = self.lock();
        if !queue.check_slow(now) {
            return false;
        }
        let stats = queue.stats();
        let core = &self.core;
        core.metrics.slow_clients.increment(1);
        let since = stats
            .backpressured_since
            .map_or(0.0, |since| (now - since).as_secs_f64());
        match (core.config.slow_client_action, core.config.mode.enforces()) {
            (SlowClientAction::Disconnect, true) => {
                let discarded =
                    queue.close(CloseReason::SlowClient, Some(core.slow_client_frame()));
                drop(queue);
                core.metrics.slow_client_disconnects.increment(1);
                tracing::warn!(
                    ws = %core.config.name,
                    backpressured_secs = since,
                    buffered_bytes = stats.buffered_bytes,
                    queued_messages = stats.queued_messages,
                    code = core.config.slow_client_close_code,
                    "disconnecting slow WebSocket client"
                );
                if let Some(discarded) = discarded {
                    self.after_close(discarded);
                }
                true
            }
            (SlowClientAction::Disconnect, false) => {
                drop(queue);
                core.metrics.slow_client_disconnects.increment(1);
                tracing::warn!(
                    ws = %core.config.name,
                    backpressured_secs = since,
                    buffered_bytes = stats.buffered_bytes,
                    "slow WebSocket client (observe-only: not disconnected)"
                );
                false
            }
            (SlowClientAction::Report, _) => {
                drop(queue);
                tracing::warn!(
                    ws = %core.config.name,
                    backpressured_secs = since,
                    buffered_bytes = stats.buffered_bytes,
                    "slow WebSocket client"
                );
                false
            }
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.lock().is_open()
    }

    /// Waits until the queue starts closing; returns why.
    pub(crate) async fn closed(&self) -> CloseReason {
        loop {
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            if let Some(reason) = self.lock().stats().closed {
                return reason;
            }
            notified.await;
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Whatever is still counted leaves the gauges with the last handle, whichever it is (a
        // writer future dropped unpolled, senders dropped without closing).
        let queue = self
            .queue
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = queue.stats();
        let metrics = &self.core.metrics;
        metrics
            .buffered_bytes
            .decrement(crate::metrics::gauge_bytes(stats.buffered_bytes));
        if stats.backpressured_since.is_some() {
            metrics.backpressured.decrement(1);
        }
        metrics.connections.decrement(1);
    }
}

/// The producer side of one connection's bounded send queue. Cheap to clone (an `Arc`) and
/// `Send + Sync`: hand clones to every task that sends to this client.
///
/// - [`try_send`](Self::try_send) never waits: it returns a [`SendOutcome`] at once.
/// - [`send`](Self::send) waits (up to `send_timeout`) while the queue is backpressured, for
///   producers that can slow down.
/// - Control frames (ping, pong, close) bypass the queue and are never refused.
///
/// When every `Sender` is dropped, the writer drains what is queued and stops (the socket's read
/// half stays usable).
pub struct Sender {
    shared: Arc<Shared>,
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Queues `message` without waiting.
    ///
    /// Data messages are subject to the limits: while the queue is backpressured the
    /// [`OverflowPolicy`](crate::OverflowPolicy) may refuse the message
    /// ([`SendOutcome::Dropped`]); a queued message above high water answers
    /// [`SendOutcome::Backpressured`]. Control frames are always queued ([`SendOutcome::Queued`])
    /// while the connection is open; a `Close` message closes it as [`close`](Self::close) does.
    pub fn try_send(&self, message: impl Into<Message>) -> SendOutcome {
        self.shared.push(message.into(), None, Instant::now())
    }

    /// Queues `message` without waiting, under coalesce `key`: with
    /// [`OverflowPolicy::Coalesce`](crate::OverflowPolicy::Coalesce), while backpressured it
    /// replaces the queued message with the same key. Under other policies the key is ignored.
    pub fn try_send_keyed(&self, key: u64, message: impl Into<Message>) -> SendOutcome {
        self.shared.push(message.into(), Some(key), Instant::now())
    }

    /// Queues `message`, first waiting while the queue is backpressured (until it drains to low
    /// water), at most `send_timeout`. Control frames and observe-only mode never wait.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] when the connection is closing or closed, [`SendError::Timeout`]
    /// when the queue did not drain in time; both give the message back.
    pub async fn send(&self, message: impl Into<Message>) -> Result<SendOutcome, SendError> {
        self.send_inner(message.into(), None).await
    }

    /// [`send`](Self::send) with a coalesce key (see [`try_send_keyed`](Self::try_send_keyed)).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_keyed(
        &self,
        key: u64,
        message: impl Into<Message>,
    ) -> Result<SendOutcome, SendError> {
        self.send_inner(message.into(), Some(key)).await
    }

    async fn send_inner(
        &self,
        message: Message,
        key: Option<u64>,
    ) -> Result<SendOutcome, SendError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.core.config.send_timeout;
        let waits = crate::queue::data_len(&message).is_some() && shared.core.limits.enforce;
        loop {
            let mut notified = pin!(shared.changed.notified());
            notified.as_mut().enable();
            {
                let mut queue = shared.lock();
                if !queue.is_open() {
                    return Err(SendError::Closed(message));
                }
                if !waits || !queue.is_backpressured() {
                    if matches!(message, Message::Close(_)) {
                        drop(queue);
                        return Ok(shared.push(message, key, Instant::now()));
                    }
                    let pushed = queue.push(message, key, Instant::now());
                    drop(queue);
                    shared.after_push(&pushed);
                    return Ok(pushed.outcome);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(SendError::Timeout(message));
            }
        }
    }

    /// Closes the connection: discards the queued data (counted as dropped, reason
    /// `disconnected`) and writes `frame` (a close frame with no code when `None`) ahead of
    /// anything else. Returns whether this call started the close (false when already closing).
    pub fn close(&self, frame: Option<CloseFrame>) -> bool {
        self.shared.close(CloseReason::ServerClosed, frame)
    }

    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        !self.shared.is_open()
    }

    /// Waits until the connection starts closing, and returns why.
    pub async fn closed(&self) -> CloseReason {
        self.shared.closed().await
    }

    /// A snapshot of the queue.
    pub fn stats(&self) -> QueueStats {
        self.shared.lock().stats()
    }

    /// `try_send` with the caller's clock reading (one per hub fan-out).
    pub(crate) fn push_at(&self, message: Message, key: Option<u64>, now: Instant) -> SendOutcome {
        self.shared.push(message, key, now)
    }

    /// Whether two senders feed the same connection.
    pub fn same_connection(&self, other: &Sender) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // AcqRel: the last sender's decrement must see every other sender's pushes (they happen
        // under the queue lock anyway, which the flag below takes).
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1
            && self.shared.lock().senders_gone()
        {
            self.shared.writer.notify_one();
        }
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// [`Sender::send`] failed; the message is given back.
#[derive(Debug)]
pub enum SendError {
    /// The connection is closing or closed.
    Closed(Message),
    /// The queue stayed backpressured for `send_timeout`.
    Timeout(Message),
}

impl SendError {
    /// The message that was not sent.
    pub fn into_message(self) -> Message {
        match self {
            Self::Closed(message) | Self::Timeout(message) => message,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed(_) => "the WebSocket connection is closed",
            Self::Timeout(_) => {
                "the WebSocket send queue stayed above high water until the send timeout"
            }
        })
    }
}

impl std::error::Error for SendError {}
