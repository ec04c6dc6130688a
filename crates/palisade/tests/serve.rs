//! `palisade::serve` against real sockets: client timeouts, header limits, keep-alive limits and
//! the drain sequence with its report.

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo, routing::get};
use palisade::{Server, ServerConfig, core::OverloadState, health::DrainOutcome};
use palisade_testkit::{Client, raw_exchange};
use support::{Hold, Running};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

mod support;

/// Settings small enough for tests: no propagation delay, short client timeouts.
fn config() -> Server {
    let mut config = ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1500),
        ..ServerConfig::default()
    };
    config.drain.propagation_delay = Duration::ZERO;
    config.drain.deadline = Duration::from_secs(5);
    Server::new(config).overload_state(OverloadState::new())
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" })).route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    )
}

/// Reads from `stream` until the peer closes it; returns what arrived and when it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(elapsed) => panic!("the server did not close the connection: {elapsed}"),
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), Instant::now())
}

#[tokio::test]
async fn serves_requests_with_connect_info() {
    let mut server = Running::start(hello(), config()).await;
    let client = Client::new();
    let response = client.get(&server.url("/")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert_eq!(client.get(&server.url("/peer")).await.text(), "127.0.0.1");
    server.shut_down();
    let report = server.report().await;
    assert_eq!(report.outcome, DrainOutcome::Drained);
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_after_the_header_timeout() {
    let server = Running::start(hello(), config()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    // Half a request head, then a byte now and then: never the blank line.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let drip = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.write_all(b"X-Drip: 1\r\n").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drip).await;
    let (seen, closed) = read_until_closed(&mut stream).await;
    let took = closed - started;
    assert!(!seen.contains("200 OK"), "never served: {seen:?}");
    assert!(
        took >= Duration::from_millis(300),
        "closed before the header timeout ({took:?})"
    );
    assert!(
        took < Duration::from_secs(5),
        "not cut off in time ({took:?})"
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let server = Running::start(hello(), config()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let (seen, closed) = read_until_closed(&mut stream).await;
    assert!(seen.is_empty());
    let took = closed - started;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn keep_alive_survives_pauses_longer_than_the_header_timeout_until_the_idle_timeout() {
    let server = Running::start(hello(), config()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 1024];
    let mut last_sent = Instant::now();
    for _ in 0..2 {
        last_sent = Instant::now();
        stream.write_all(request).await.unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // Longer than the header timeout, shorter than the idle timeout.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let (seen, closed) = read_until_closed(&mut stream).await;
    assert!(seen.is_empty());
    // The idle clock started when the last response was written, after `last_sent`: however
    // slowly this test ran, the 1.5 s idle timeout cannot have ended sooner after it.
    let idle = closed - last_sent;
    assert!(
        idle >= Duration::from_millis(1450) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let mut config = config();
    config.config_mut().max_headers = 20;
    let server = Running::start(hello(), config).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let answer = raw_exchange(server.addr, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..30 {
        many += &["X-H", &i.to_string(), ": v\r\n"].concat();
    }
    many.push_str("\r\n");
    let answer = raw_exchange(server.addr, many.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Within the limits: served.
    let fine = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Small: 1\r\n\r\n";
    let answer = raw_exchange(server.addr, fine.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn the_last_request_of_a_connection_says_connection_close() {
    let mut config = config();
    config.config_mut().max_requests_per_connection = NonZeroU32::new(2);
    let server = Running::start(hello(), config).await;
    let two = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_exchange(server.addr, two, Duration::from_secs(5)).await;
    let responses: Vec<&str> = answer.split("HTTP/1.1 200 OK").skip(1).collect();
    assert_eq!(responses.len(), 2, "{answer:?}");
    assert!(
        !responses[0]
            .to_ascii_lowercase()
            .contains("connection: close")
    );
    assert!(
        responses[1]
            .to_ascii_lowercase()
            .contains("connection: close")
    );
}

#[tokio::test]
async fn an_invalid_configuration_is_an_error_not_a_panic() {
    let mut config = config();
    config.config_mut().max_header_bytes = 100;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = palisade::serve_with_shutdown(listener, hello(), config, async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("server.max_header_bytes"), "{err}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let hold = Hold::new();
    let mut server = Running::start(Router::new().route("/hold", hold.route()), config()).await;
    let url = server.url("/hold");
    let in_flight = tokio::spawn(async move { Client::new().get(&url).await });
    hold.entered(1).await;
    server.shut_down();
    // The listener closes: new connections are refused.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(server.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting after shutdown");
    hold.release();
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "released");
    let report = server.report().await;
    assert_eq!(report.outcome, DrainOutcome::Drained);
    assert_eq!(report.requests_at_stop, 1);
    assert_eq!(report.connections_at_stop, 1);
    assert_eq!(report.requests_completed_during_drain, 1);
    assert_eq!((report.requests_cut, report.connections_cut), (0, 0));
    assert!(report.to_string().contains("none cut off"), "{report}");
}

#[tokio::test]
async fn the_deadline_cuts_off_what_is_still_running_and_says_so() {
    let hold = Hold::new();
    let mut config = config();
    config.config_mut().drain.deadline = Duration::from_millis(200);
    let mut server = Running::start(Router::new().route("/hold", hold.route()), config).await;
    let url = server.url("/hold");
    let in_flight = tokio::spawn(async move {
        let request = http::Request::get(url).body(http_body_util::Full::default());
        Client::new().try_send(request.unwrap()).await
    });
    hold.entered(1).await;
    server.shut_down();
    let report = server.report().await;
    assert_eq!(report.outcome, DrainOutcome::DeadlineExceeded);
    assert_eq!((report.requests_cut, report.connections_cut), (1, 1));
    assert!(
        report
            .to_string()
            .contains("1 requests on 1 connections cut off"),
        "{report}"
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the client sees its request cut off"
    );
}

#[tokio::test]
async fn an_upgraded_websocket_is_not_timed_out_by_the_http_clocks() {
    use axum::extract::ws::WebSocketUpgrade;
    use futures_util::{SinkExt, StreamExt};

    let echo = Router::new().route(
        "/echo",
        get(|upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(|mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
            })
        }),
    );
    let server = Running::start(echo, config()).await;
    let url = format!("ws://{}/echo", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    // Silent for longer than both the header timeout (300 ms) and the idle timeout (1.5 s):
    // after the 101 the connection is the WebSocket's, not HTTP/1.1's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("still here"))
        .await
        .expect("the connection is still open");
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an echo")
        .expect("open")
        .expect("a message");
    assert_eq!(echoed.to_text().unwrap(), "still here");
}
