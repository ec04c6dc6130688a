//! Test helpers shared by the Palisade crates' integration tests: a real axum server bound to
//! `127.0.0.1:0` and a real hyper HTTP/1.1 client, so tests exercise the same code paths as
//! production (connection handling, body streaming, dropped connections), not only
//! `tower::ServiceExt::oneshot`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, routing::get};
//! use palisade_testkit::{Client, TestServer};
//!
//! let server = TestServer::start(Router::new().route("/", get(|| async { "hi" }))).await;
//! let response = Client::new().get(&server.url("/")).await;
//! assert_eq!(response.status, 200);
//! assert_eq!(response.text(), "hi");
//! server.shutdown().await;
//! # }
//! ```

pub mod bench;
pub mod metrics;
pub mod redis;
pub mod tls;

mod logs;
pub use logs::LogCapture;

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioExecutor};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

/// An axum server on an ephemeral loopback port, with `ConnectInfo<SocketAddr>` available to
/// layers and graceful shutdown.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Serves `router` on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, signal) = oneshot::channel::<()>();
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.await;
                })
                .await
        });
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting, waits up to 10 s for open connections to finish, then returns.
    ///
    /// # Panics
    ///
    /// When the server task itself failed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server shut down within 10 s")
            .expect("server task")
            .expect("server error");
    }
}

/// A real HTTP/1.1 client (hyper's pooled client).
#[derive(Debug, Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A header as a string, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    /// A client with a connection pool.
    pub fn new() -> Self {
        Self {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET url`.
    ///
    /// # Panics
    ///
    /// On connection errors: tests want to fail loudly there.
    pub async fn get(&self, url: &str) -> TestResponse {
        self.send(Request::get(url).body(Full::default()).expect("request"))
            .await
    }

    /// `GET url` with one extra request header.
    ///
    /// # Panics
    ///
    /// On connection errors or an invalid header.
    pub async fn get_with_header(&self, url: &str, name: &str, value: &str) -> TestResponse {
        let request = Request::get(url)
            .header(name, value)
            .body(Full::default())
            .expect("request");
        self.send(request).await
    }

    /// `POST url` with an empty body.
    ///
    /// # Panics
    ///
    /// On connection errors.
    pub async fn post(&self, url: &str) -> TestResponse {
        self.send(Request::post(url).body(Full::default()).expect("request"))
            .await
    }

    /// Sends `request` and reads the whole response.
    ///
    /// # Panics
    ///
    /// On connection errors.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> TestResponse {
        self.try_send(request).await.expect("HTTP request failed")
    }

    /// Sends `request` and returns as soon as the response head arrives, with the body still
    /// streaming: for tests of what happens while a body is open.
    ///
    /// # Panics
    ///
    /// On connection errors.
    pub async fn send_streaming(
        &self,
        request: Request<Full<Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        self.inner
            .request(request)
            .await
            .expect("HTTP request failed")
    }

    /// Sends `request` and reads the whole response, returning transport errors.
    ///
    /// # Errors
    ///
    /// Connection or protocol errors, as text.
    pub async fn try_send(&self, request: Request<Full<Bytes>>) -> Result<TestResponse, String> {
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Opens a raw TCP connection, writes `request` verbatim and reads until the peer closes or
/// `timeout` passes; for tests of malformed or hostile input that a client library would refuse
/// to send.
///
/// # Panics
///
/// When the connection cannot be opened.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut seen)).await;
    String::from_utf8_lossy(&seen).into_owned()
}
