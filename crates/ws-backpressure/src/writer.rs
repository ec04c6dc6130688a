//! [`Writer`]: the one task that moves messages from a connection's queue into its socket.
//!
//! It is generic over any `Sink<Message>` (axum's `WebSocket` or its split half in production,
//! a mock in tests). It takes one message at a time, so the queue's byte count is exact: a
//! message is counted until the writer takes it, and the writer never holds more than one.
//! Consecutive messages are *fed* without flushing and flushed once the queue is empty, so a
//! burst costs one socket write per write buffer, not one per message.
//!
//! While a socket operation is blocked (the client stopped reading and the TCP buffers are full),
//! the writer also watches the slow-client deadline and close requests, so a stalled socket can
//! always be abandoned: the slow-client verdict does not depend on the socket making progress.

use std::{
    fmt,
    future::{Future, poll_fn},
    pin::pin,
    sync::Arc,
    task::Poll,
};

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use tokio::time::Instant;

use crate::{
    queue::{CloseReason, Next},
    sender::Shared,
};

/// Writes a connection's queued messages to its sink; run it with [`run`](Self::run) (the
/// [`Hub`](crate::Hub) and [`Backpressure::split`](crate::Backpressure::split) do).
#[must_use = "the writer does nothing unless run"]
pub struct Writer<S> {
    shared: Arc<Shared>,
    sink: S,
}

impl<S> fmt::Debug for Writer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// A blocked socket operation ended, or was abandoned because the queue started closing.
enum Guarded<T> {
    Done(T),
    Interrupted,
}

impl<S> Writer<S>
where
    S: Sink<Message> + Unpin,
    S::Error: fmt::Display,
{
    pub(crate) fn new(shared: Arc<Shared>, sink: S) -> Self {
        Self { shared, sink }
    }

    /// Writes until the connection closes, then returns why. On return the queue is closed
    /// (except after [`CloseReason::SendersDropped`], which leaves the read half usable), so the
    /// [`Receiver`](crate::Receiver) and waiting senders see it.
    pub async fn run(mut self) -> CloseReason {
        let reason = self.write_all().await;
        if reason != CloseReason::SendersDropped {
            self.shared.close(reason, None);
        }
        reason
    }

    async fn write_all(&mut self) -> CloseReason {
        let mut unflushed = false;
        loop {
            let now = Instant::now();
            let next = {
                let mut queue = self.shared.lock();
                // A client that drains slowly never blocks a single operation long enough for
                // the deadline in `guarded` to fire; check the clock between operations too.
                if queue
                    .slow_deadline()
                    .is_some_and(|deadline| now >= deadline)
                {
                    drop(queue);
                    self.shared.check_slow(now);
                    queue = self.shared.lock();
                }
                let next = queue.next();
                if matches!(next, Next::Idle) && !unflushed {
                    queue.park_writer();
                }
                next
            };
            let message = match next {
                Next::Control(message) => message,
                Next::Data(popped) => {
                    let metrics = &self.shared.core.metrics;
                    metrics
                        .buffered_bytes
                        .decrement(crate::metrics::gauge_bytes(popped.bytes));
                    metrics
                        .queue_delay
                        .record(now.saturating_duration_since(popped.enqueued));
                    if popped.released {
                        metrics.backpressured.decrement(1);
                        self.shared.changed.notify_waiters();
                    }
                    popped.message
                }
                Next::Idle => {
                    if unflushed {
                        match self.guarded(|sink| sink.flush()).await {
                            Guarded::Done(Ok(())) => unflushed = false,
                            Guarded::Done(Err(error)) => return write_failed(&error),
                            Guarded::Interrupted => {}
                        }
                    } else {
                        // Parked: a push that gives us work, a close, or the last sender leaving
                        // wakes us (a wake-up sent before we wait is kept as a permit).
                        self.shared.writer.notified().await;
                    }
                    continue;
                }
                Next::Close(frame, reason) => {
                    let timeout = self.shared.core.config.close_timeout;
                    // Best effort: a stalled client may never take the close frame. The
                    // timeout bounds how long the socket is kept after the decision.
                    let _ =
                        tokio::time::timeout(timeout, self.sink.send(Message::Close(frame))).await;
                    return reason;
                }
                Next::Stop(reason) => {
                    let flush = match reason {
                        // Deliver what is queued in the socket (and, when the client closed,
                        // tungstenite's automatic close reply), within the close timeout.
                        CloseReason::ClientClosed | CloseReason::SendersDropped => unflushed,
                        _ => false,
                    };
                    if flush || reason == CloseReason::ClientClosed {
                        let timeout = self.shared.core.config.close_timeout;
                        let _ = tokio::time::timeout(timeout, self.sink.flush()).await;
                    }
                    return reason;
                }
            };
            match self.guarded(|sink| sink.feed(message)).await {
                Guarded::Done(Ok(())) => unflushed = true,
                Guarded::Done(Err(error)) => return write_failed(&error),
                // The message is lost with the connection; the next turn writes the close frame.
                Guarded::Interrupted => {}
            }
        }
    }

    /// Runs one socket operation while watching the slow-client deadline and close requests.
    async fn guarded<'a, F, T>(&'a mut self, op: impl FnOnce(&'a mut S) -> F) -> Guarded<T>
    where
        F: Future<Output = T> + 'a,
    {
        let shared = &self.shared;
        let mut op = pin!(op(&mut self.sink));
        // Fast path: a socket with room completes at once; the watching below is for a socket
        // that blocks.
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx))).await {
            return Guarded::Done(output);
        }
        loop {
            let notified = shared.writer.notified();
            let deadline = {
                let queue = shared.lock();
                if !queue.is_open() {
                    return Guarded::Interrupted;
                }
                queue.slow_deadline()
            };
            tokio::select! {
                biased;
                output = &mut op => return Guarded::Done(output),
                // Something changed (backpressure started, close requested): re-read the state.
                () = notified => {}
                () = sleep_until(deadline), if deadline.is_some() => {
                    if shared.check_slow(Instant::now()) {
                        return Guarded::Interrupted;
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

fn write_failed(error: &impl fmt::Display) -> CloseReason {
    tracing::debug!(%error, "WebSocket write failed");
    CloseReason::Error
}
