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
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use pin_project::pin_project;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use super::metrics;

/// What the service side of a connection tells its IO: requests in progress, when the last one
/// ended, and whether the connection was upgraded.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    in_flight: AtomicU32,
    upgraded: AtomicBool,
    served: AtomicU32,
    /// When the connection last became idle, in nanoseconds since `epoch`. Recorded rather than
    /// signalled: waking the reader at the end of every request would cost the connection task a
    /// second poll per request, and the reader only needs the time once its timer fires or the
    /// next request arrives.
    idle_since: AtomicU64,
    epoch: Instant,
}

impl Default for ConnectionState {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            upgraded: AtomicBool::new(false),
            served: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
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
            let nanos = Instant::now()
                .saturating_duration_since(self.epoch)
                .as_nanos();
            self.idle_since
                .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// When the last request ended.
    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.idle_since.load(Ordering::Relaxed))
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
    /// The timer has been polled since it was last reset, so it will wake the task when it fires.
    armed: bool,
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
            armed: false,
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
            // hyper parks this read while the request is served and polls it again only when
            // the socket or the timer wakes the task; the end of the request does not. So the
            // timer must stay armed: if it fired during a long request, re-arm it, and the
            // idle clock is checked (from the recorded end of the request) when it next fires.
            if read.is_pending() && (!*this.armed || this.timer.is_elapsed()) {
                if this.timer.is_elapsed() {
                    let next = Instant::now() + this.timeouts.header_read;
                    this.timer.as_mut().reset(next);
                }
                *this.armed = this.timer.as_mut().poll(cx).is_pending();
            }
            return read;
        }
        if *this.waiting == Waiting::Busy {
            // The last response has ended: the connection is idle until the next byte.
            *this.waiting = Waiting::Idle;
            *this.since = this.state.idle_since();
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
                if this.timer.as_mut().poll(cx).is_pending() {
                    *this.armed = true;
                    return Poll::Pending;
                }
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
        // woken: the timer must still be armed when the request ends, and the idle clock must
        // count from the end of the request, not from when the timer noticed it.
        let ended = state.clone();
        let served_for = Duration::from_secs(603);
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
