//! [`TimedIo`]: the connection's read side with the two client timeouts hyper lacks as separate
//! settings.
//!
//! hyper's own `header_read_timeout` starts when hyper begins waiting for a request head, idle
//! keep-alive time included, so one number has to serve as both the slowloris bound (short) and
//! the keep-alive idle timeout (longer than the load balancer's, or the balancer reuses a
//! connection the server is closing and the client sees a 502). Here the two are separate: the
//! idle clock runs while a kept-alive connection waits with nothing received, the header clock
//! from the first byte of a request (or from accept: a client that connects and sends nothing is
//! treated like a slow one). While a request is being served no clock runs (the request timeout
//! bounds that), and after a protocol upgrade (WebSocket) none ever runs again.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    task::{Context, Poll, Waker, ready},
    time::Duration,
};

use pin_project::pin_project;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use super::metrics;

/// What the service side of a connection tells its IO: requests in progress, and whether the
/// connection was upgraded.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    in_flight: AtomicU32,
    upgraded: AtomicBool,
    served: AtomicU32,
    // The reader's waker, parked while a request is served (uncontended: one connection).
    idle_waker: Mutex<Option<Waker>>,
}

impl ConnectionState {
    /// A request's head arrived; returns how many requests this connection has now received.
    pub(crate) fn request_started(&self) -> u32 {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A request's response ended (or was abandoned).
    pub(crate) fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            let waker = self
                .idle_waker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    fn wake_reader_when_idle(&self, waker: &Waker) {
        let mut slot = self
            .idle_waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *slot {
            Some(old) if old.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// The connection switched protocols: it is no longer HTTP/1.1's to time out.
    pub(crate) fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    fn upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Relaxed)
    }
}

/// The two client timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// For the rest of a request head (or the first request after accept).
    Head,
    /// On an idle kept-alive connection, nothing received yet.
    Idle,
    /// Not waiting: a request is being served.
    Busy,
}

/// An IO whose reads fail with `TimedOut` when the client is too slow to send a request head or
/// leaves a kept-alive connection idle too long. Writes pass through.
///
/// The timer is lazy: state changes (two per request) only note the time, and the one `Sleep` is
/// re-armed when it fires, never further ahead than one header timeout. Every deadline is at
/// least one header timeout after the state change that set it, so the timer always fires at or
/// before it, and the connection pays for a timer reset about once per header timeout instead of
/// once per request.
#[pin_project]
#[derive(Debug)]
pub(crate) struct TimedIo<I> {
    #[pin]
    io: I,
    state: Arc<ConnectionState>,
    timeouts: Timeouts,
    waiting: Waiting,
    /// When the current wait began.
    since: Instant,
    // Boxed so that `TimedIo` stays `Unpin` for hyper; reset, never reallocated.
    timer: Pin<Box<Sleep>>,
}

impl<I> TimedIo<I> {
    pub(crate) fn new(io: I, state: Arc<ConnectionState>, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        Self {
            io,
            state,
            timeouts,
            waiting: Waiting::Head,
            since: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeouts.header_read)),
        }
    }
}

impl<I: AsyncRead> AsyncRead for TimedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.io.poll_read(cx, buf);
        if this.state.upgraded() {
            return read;
        }
        if this.state.busy() {
            *this.waiting = Waiting::Busy;
            if read.is_pending() {
                // hyper will not read again until the socket wakes it, so the end of the
                // request must: that is when the idle clock starts.
                this.state.wake_reader_when_idle(cx.waker());
            }
            return read;
        }
        if *this.waiting == Waiting::Busy {
            // The last response just ended: the connection is idle until the next byte.
            *this.waiting = Waiting::Idle;
            *this.since = Instant::now();
        }
        match read {
            Poll::Ready(Ok(())) => {
                if *this.waiting == Waiting::Idle && buf.filled().len() > before {
                    *this.waiting = Waiting::Head;
                    *this.since = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => loop {
                ready!(this.timer.as_mut().poll(cx));
                let (limit, reason) = match this.waiting {
                    Waiting::Idle => (this.timeouts.idle, "idle_timeout"),
                    _ => (this.timeouts.header_read, "header_read_timeout"),
                };
                let due = *this.since + limit;
                let now = Instant::now();
                if now >= due {
                    metrics::connection_timed_out(reason);
                    tracing::debug!(reason, "closing a connection whose client is too slow");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, reason)));
                }
                this.timer
                    .as_mut()
                    .reset(due.min(now + this.timeouts.header_read));
            },
        }
    }
}

impl<I: AsyncWrite> AsyncWrite for TimedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_after_the_header_timeout() {
        let (server, _client) = duplex(64);
        let mut io = TimedIo::new(server, Arc::default(), TIMEOUTS);
        let started = Instant::now();
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), TIMEOUTS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_gets_the_idle_timeout_then_the_header_timeout_from_its_first_byte()
    {
        let (server, mut client) = duplex(64);
        let state = Arc::new(ConnectionState::default());
        let mut io = TimedIo::new(server, state.clone(), TIMEOUTS);
        // A first request is served and ends.
        state.request_started();
        client.write_all(b"x").await.unwrap();
        assert_eq!(io.read(&mut [0; 8]).await.unwrap(), 1);
        state.request_ended();
        // Idle for most of the idle timeout: still open.
        let idle_from = Instant::now();
        let mut buf = [0; 8];
        let read = tokio::time::timeout(Duration::from_secs(70), io.read(&mut buf)).await;
        assert!(read.is_err(), "no timeout before the idle timeout");
        // A byte arrives: the header clock starts from here.
        client.write_all(b"G").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        let head_from = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(head_from.elapsed(), TIMEOUTS.header_read);
        assert!(idle_from.elapsed() < TIMEOUTS.idle + TIMEOUTS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_parked_during_a_request_times_out_once_the_connection_is_idle() {
        let (server, _client) = duplex(64);
        let state = Arc::new(ConnectionState::default());
        let mut io = TimedIo::new(server, state.clone(), TIMEOUTS);
        state.request_started();
        // hyper parks one read while the request is served and does not poll it again until
        // woken: the end of the request must wake it for the idle clock to start.
        let ended = state.clone();
        let served_for = Duration::from_secs(600);
        tokio::spawn(async move {
            tokio::time::sleep(served_for).await;
            ended.request_ended();
        });
        let started = Instant::now();
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), served_for + TIMEOUTS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_never_times_out() {
        let (server, mut client) = duplex(64);
        let state = Arc::new(ConnectionState::default());
        let mut io = TimedIo::new(server, state.clone(), TIMEOUTS);
        state.mark_upgraded();
        let read = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut [0; 8])).await;
        assert!(read.is_err(), "still waiting after an hour");
        client.write_all(b"frame").await.unwrap();
        assert_eq!(io.read(&mut [0; 8]).await.unwrap(), 5);
    }
}
