//! [`ConnectionLimitListener`]: an `axum::serve::Listener` that counts open connections and, above
//! the high-water mark, pauses accepting or answers a canned 503.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::serve::Listener;
use bytes::Bytes;
use http::StatusCode;
use palisade_core::{ConfigError, OverloadState, Rejection, RetryAfter};
use pin_project::pin_project;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    sync::Semaphore,
};

use crate::{
    config::{ConnectionLimitConfig, OverLimitPolicy},
    limiter::{Limiter, LimiterHandle, LimiterSettings, Permit},
    metrics::Kind,
};

/// How long a refused connection may take to receive its 503 before it is closed regardless.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);
/// How much of a refused client's request is read (and discarded) before closing. Closing a
/// socket with unread input makes the kernel send RST, which can destroy the 503 in flight.
const REFUSAL_DRAIN_LIMIT: usize = 64 * 1024;

/// Wraps any [`Listener`] (axum's `TcpListener`, `UnixListener`, or your own) and limits open
/// connections with high/low water marks; see the [crate docs](crate).
///
/// Each accepted connection holds a slot until its [`LimitedIo`] is dropped, that is until hyper
/// closes it. Accept errors are the wrapped listener's to handle: axum's listeners log them and,
/// for errors such as `EMFILE` (too many open files), sleep one second before retrying, so the
/// accept loop never spins.
///
/// `ConnectInfo<SocketAddr>`: axum implements `Connected` for the address of its own listeners and
/// of [`axum::serve::ListenerExt::tap_io`], and Rust's orphan rules keep this crate from adding an
/// implementation for its listener. Wrap it with `tap_io` (for example to set `TCP_NODELAY`) and
/// `into_make_service_with_connect_info::<SocketAddr>()` works as usual.
pub struct ConnectionLimitListener<L> {
    inner: L,
    limiter: Arc<Limiter>,
    policy: OverLimitPolicy,
    refusal: Bytes,
    refusing: Arc<Semaphore>,
}

impl<L: std::fmt::Debug> std::fmt::Debug for ConnectionLimitListener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimitListener")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<L> ConnectionLimitListener<L> {
    /// Wraps `inner` with the limits of `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see
    /// [`ConnectionLimitConfig::validate`]) or the overload state has no free source slot.
    pub fn new(inner: L, config: ConnectionLimitConfig) -> Result<Self, ConfigError> {
        Self::with_overload_state(inner, config, OverloadState::global().clone())
    }

    /// As [`new`](Self::new), publishing into `overload` instead of [`OverloadState::global`].
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_overload_state(
        inner: L,
        config: ConnectionLimitConfig,
        overload: OverloadState,
    ) -> Result<Self, ConfigError> {
        let thresholds = config.validate()?;
        if config.max_rejecting == 0 {
            return Err(ConfigError::new("max_rejecting", "must be at least 1"));
        }
        let refusal = canned_503(RetryAfter::checked(config.retry_after, Duration::ZERO)?)?;
        let limiter = Limiter::new(LimiterSettings {
            kind: Kind::Connections,
            name: config.name,
            thresholds,
            dwell: Duration::ZERO,
            critical_reserve: false,
            mode: config.mode,
            overload: Some(overload),
            rejection: None,
        })?;
        let refusing = Arc::new(Semaphore::new(config.max_rejecting as usize));
        Ok(Self {
            inner,
            limiter,
            policy: config.policy,
            refusal,
            refusing,
        })
    }

    /// A read-only view of the open-connection count and state.
    pub fn handle(&self) -> LimiterHandle {
        LimiterHandle {
            limiter: Arc::clone(&self.limiter),
        }
    }

    /// The wrapped listener.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }
}

/// The whole refusal, serialized once: status line, headers and the problem+json body.
fn canned_503(retry_after: RetryAfter) -> Result<Bytes, ConfigError> {
    let rejection = Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "connection_limit")
        .detail("The server has too many open connections. Retry after the delay in Retry-After.")
        .build()?;
    let body = rejection.body();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         cache-control: no-store\r\nretry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        retry_after.seconds(),
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Ok(Bytes::from(bytes))
}

impl<L: Listener> Listener for ConnectionLimitListener<L> {
    type Io = LimitedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if self.policy == OverLimitPolicy::PauseAccepting && self.limiter.mode().enforces() {
                wait_until_accepting(&self.limiter).await;
            }
            let (io, addr) = self.inner.accept().await;
            match self.limiter.acquire(false) {
                Ok(permit) => return (LimitedIo { io, permit }, addr),
                Err(_) => self.refuse(io),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Waits until the limiter stops refusing. Borrows only the limiter (which is `Sync`): the
/// wrapped listener need only be `Send`.
async fn wait_until_accepting(limiter: &Limiter) {
    loop {
        // Registered before the check, so a wake-up between check and wait is not lost.
        let resumed = limiter.resumed.notified();
        tokio::pin!(resumed);
        resumed.as_mut().enable();
        if !limiter.load().1 {
            return;
        }
        resumed.await;
    }
}

impl<L> ConnectionLimitListener<L> {
    /// Answers a refused connection off the accept loop, with a bounded number at once; beyond
    /// that bound the connection is closed without an answer.
    fn refuse<Io>(&self, io: Io)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(slot) = Arc::clone(&self.refusing).try_acquire_owned() else {
            return;
        };
        let refusal = self.refusal.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_DEADLINE, send_refusal(io, &refusal)).await;
            drop(slot);
        });
    }
}

async fn send_refusal<Io: AsyncRead + AsyncWrite + Unpin>(
    mut io: Io,
    refusal: &[u8],
) -> io::Result<()> {
    io.write_all(refusal).await?;
    io.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_LIMIT {
        match io.read(&mut sink).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

/// A connection counted by a [`ConnectionLimitListener`]: its slot is released when it is dropped.
#[pin_project]
pub struct LimitedIo<Io> {
    #[pin]
    io: Io,
    permit: Permit,
}

impl<Io: std::fmt::Debug> std::fmt::Debug for LimitedIo<Io> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedIo")
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl<Io> LimitedIo<Io> {
    /// The connection.
    pub fn get_ref(&self) -> &Io {
        &self.io
    }

    /// The connection, mutably (for socket options such as `TCP_NODELAY`).
    pub fn get_mut(&mut self) -> &mut Io {
        &mut self.io
    }
}

impl<Io: AsyncRead> AsyncRead for LimitedIo<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite> AsyncWrite for LimitedIo<Io> {
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

    // hyper writes headers and body with one vectored write when the IO supports it.
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
