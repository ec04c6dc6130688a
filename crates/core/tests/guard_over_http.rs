//! The completion guard on a real HTTP/1.1 connection: a permit taken for a streaming response is
//! released when the body has been sent, and also when the client hangs up mid-stream.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, middleware, routing::get};
use bytes::Bytes;
use http_body::Frame;
use palisade_core::{BodyEnd, ResponseBody};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

type Ends = Arc<Mutex<Vec<BodyEnd>>>;

/// A server whose `/stream` route sends one chunk and then whatever the test pushes, and whose
/// middleware wraps every response body in a guard that records how it ended.
async fn server(ends: Ends) -> (std::net::SocketAddr, mpsc::UnboundedSender<&'static str>) {
    let (tx, rx) = mpsc::unbounded_channel::<&'static str>();
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/stream",
            get(move || {
                let rx = rx.clone();
                async move {
                    let rest = rx
                        .lock()
                        .await
                        .take()
                        .expect("one streaming request per test");
                    Body::new(ChainBody {
                        first: Some(Bytes::from_static(b"first;")),
                        rest,
                    })
                }
            }),
        )
        .layer(middleware::from_fn(
            move |req: axum::extract::Request, next: middleware::Next| {
                let ends = ends.clone();
                async move {
                    let response = next.run(req).await;
                    response.map(|body| {
                        Body::new(ResponseBody::with_guard(body, move |end| {
                            ends.lock().unwrap().push(end);
                        }))
                    })
                }
            },
        ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, tx)
}

/// A body made of a first chunk and then whatever arrives on a channel, until it closes.
struct ChainBody {
    first: Option<Bytes>,
    rest: mpsc::UnboundedReceiver<&'static str>,
}

impl http_body::Body for ChainBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(first))));
        }
        self.rest
            .poll_recv(cx)
            .map(|c| c.map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes())))))
    }
}

async fn wait_for(ends: &Ends, want: &[BodyEnd]) {
    for _ in 0..500 {
        if ends.lock().unwrap().as_slice() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("guard saw {:?}, wanted {want:?}", ends.lock().unwrap());
}

async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_complete_response_completes_the_guard() {
    let ends = Ends::default();
    let (addr, _tx) = server(ends.clone()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut stream, "hello").await;
    wait_for(&ends, &[BodyEnd::Completed]).await;
}

#[tokio::test]
async fn a_streaming_body_holds_the_guard_until_it_ends() {
    let ends = Ends::default();
    let (addr, tx) = server(ends.clone()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut stream, "first;").await;
    tx.send("second;").unwrap();
    read_until(&mut stream, "second;").await;
    assert!(
        ends.lock().unwrap().is_empty(),
        "headers and two chunks sent, body still open"
    );
    drop(tx); // the handler's stream ends
    read_until(&mut stream, "0\r\n\r\n").await;
    wait_for(&ends, &[BodyEnd::Completed]).await;
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_drops_the_guard() {
    let ends = Ends::default();
    let (addr, tx) = server(ends.clone()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut stream, "first;").await;
    drop(stream);
    // hyper notices the closed socket on its next write.
    let _ = tx.send("into the void;");
    wait_for(&ends, &[BodyEnd::Dropped]).await;
}
