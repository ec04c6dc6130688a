//! One HTTP/1.1 connection: hyper's connection driver, the per-connection service that hands
//! requests to the `Router`, and the bookkeeping the drain report and the client timeouts read.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Extensions, HeaderValue, Request, Response, StatusCode, header},
    routing::future::RouteFuture,
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use palisade_core::{BodyEnd, ClientIdentity, OnBodyEnd, ResponseBody};
use pin_project::pin_project;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};
use tower::Service;

use super::{
    Counters,
    io::{ConnectionState, TimedIo, Timeouts},
};

/// The HTTP/1.1 settings every connection shares.
#[derive(Debug)]
pub(crate) struct Http1Settings {
    pub(crate) timeouts: Timeouts,
    pub(crate) keep_alive: bool,
    pub(crate) max_requests: Option<NonZeroU32>,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
}

/// hyper's default header count; setting any other value makes hyper allocate the header array
/// on the heap for every request, so the default is left alone.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

impl Http1Settings {
    fn builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(self.keep_alive)
            .max_header_size(self.max_header_bytes)
            // Our own clocks in `TimedIo` replace hyper's combined head-and-idle timeout.
            .header_read_timeout(None);
        if self.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            builder.max_headers(self.max_headers);
        }
        builder
    }
}

/// Serves one accepted connection until it closes, or gracefully once `close` flips.
pub(crate) async fn serve_connection<I>(
    io: I,
    remote: SocketAddr,
    app: Router,
    settings: Arc<Http1Settings>,
    counters: Arc<Counters>,
    mut close: watch::Receiver<bool>,
    identity: Option<ClientIdentity>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let _open = counters.connection_opened();
    let state = Arc::new(ConnectionState::default());
    let io = TokioIo::new(TimedIo::new(io, state.clone(), settings.timeouts));
    let service = ConnectionService {
        app,
        extensions: connection_extensions(remote, identity),
        state,
        counters,
        max_requests: settings.max_requests,
    };
    let connection = settings
        .builder()
        .serve_connection(io, service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%err, %remote, "connection ended with an error");
                }
                return;
            }
            // Idle connections close at once; busy ones after their response.
            changed = close.wait_for(|close| *close), if !closing => {
                closing = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Hands each request of one connection to the router.
#[derive(Debug, Clone)]
struct ConnectionService {
    app: Router,
    /// What every request of the connection starts with (see [`connection_extensions`]).
    extensions: Extensions,
    state: Arc<ConnectionState>,
    counters: Arc<Counters>,
    max_requests: Option<NonZeroU32>,
}

/// How many extensions a request's map holds without growing: the peer address (and, over
/// mutual TLS, the client identity) from here; the original URI, the matched path and the path
/// parameters from the router; the request id and the priority from the stack. More (the
/// telemetry span when spans are exported, the client address a rate limit keys by) grow the map
/// once.
const EXTENSION_SLOTS: usize = 7;

/// The extensions every request of the connection starts with: the peer address (the same
/// `ConnectInfo` that `into_make_service_with_connect_info` gives, so its extractors and the
/// layers that read the peer address work unchanged) and the verified mutual-TLS client, in a map
/// already big enough for what the stack and the router add. Cloning it costs the allocations
/// that inserting the first extension would (the map, its table, the boxed value); a map made on
/// demand would also grow at the fourth insert, a new table and a rehash on every request.
fn connection_extensions(remote: SocketAddr, identity: Option<ClientIdentity>) -> Extensions {
    /// Placeholders that grow the map once, removed before the first request.
    #[derive(Clone, Copy)]
    struct Slot<const N: usize>;
    let mut extensions = Extensions::new();
    extensions.insert(ConnectInfo(remote));
    if let Some(identity) = identity {
        extensions.insert(identity);
    }
    macro_rules! grow {
        ($($n:literal)*) => {
            $( if extensions.len() < EXTENSION_SLOTS { extensions.insert(Slot::<$n>); } )*
            $( extensions.remove::<Slot<$n>>(); )*
        };
    }
    grow!(0 1 2 3 4 5 6);
    extensions
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<ResponseBody<Body, RequestDone>>;
    type Error = Infallible;
    type Future = ConnectionFuture;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let served = self.state.request_started();
        self.counters.request_started();
        let done = RequestDone {
            state: self.state.clone(),
            counters: self.counters.clone(),
        };
        // hyper adds an extension only to upgrade requests.
        let added = std::mem::replace(request.extensions_mut(), self.extensions.clone());
        request.extensions_mut().extend(added);
        let last = self.max_requests.is_some_and(|max| served >= max.get());
        // `Router` is always ready and cheap to clone (one `Arc`).
        let future = self.app.clone().call(request);
        ConnectionFuture {
            future,
            done: Some(done),
            last,
        }
    }
}

/// The router's future, adding `Connection: close` on a connection's last request and tying the
/// request's bookkeeping to the end of its response body.
#[pin_project]
pub(crate) struct ConnectionFuture {
    #[pin]
    future: RouteFuture<Infallible>,
    done: Option<RequestDone>,
    last: bool,
}

impl Future for ConnectionFuture {
    type Output = Result<Response<ResponseBody<Body, RequestDone>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.future.poll(cx));
        let done = this.done.take().expect("polled after completion");
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            done.state.mark_upgraded();
        } else if *this.last {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response.map(|body| ResponseBody::with_guard(body, done))))
    }
}

/// Ends a request's bookkeeping when its response body ends, or when the request is abandoned
/// (the connection was cut while the handler ran).
#[derive(Debug)]
pub(crate) struct RequestDone {
    state: Arc<ConnectionState>,
    counters: Arc<Counters>,
}

impl OnBodyEnd for RequestDone {
    fn on_body_end(self, _end: BodyEnd) {}
}

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.state.request_ended();
        self.counters.request_ended();
    }
}
