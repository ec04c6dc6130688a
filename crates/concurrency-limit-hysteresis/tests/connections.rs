//! The connection limiter in front of a real axum server, driven with raw TCP connections: both
//! over-limit policies, recovery at the low-water mark, and `ConnectInfo` through `tap_io`.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo, routing::get, serve::ListenerExt};
use palisade_concurrency_limit_hysteresis::{
    ConnectionLimitConfig, ConnectionLimitListener, LimiterHandle, OverLimitPolicy, Watermark,
};
use palisade_core::{EnforcementMode, OverloadState};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

async fn serve(policy: OverLimitPolicy, mode: EnforcementMode) -> (SocketAddr, LimiterHandle) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let mut config = ConnectionLimitConfig::default();
    config.max_connections = 4;
    config.high_water = Watermark::count(3);
    config.low_water = Watermark::count(1);
    config.policy = policy;
    config.mode = mode;
    config.retry_after = Duration::from_secs(7);
    let listener =
        ConnectionLimitListener::with_overload_state(tcp, config, OverloadState::new()).unwrap();
    let handle = listener.handle();
    let listener = listener.tap_io(|io| {
        let _ = io.get_mut().set_nodelay(true);
    });
    let app =
        Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("hello {}", peer.ip())
            }),
        );
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, handle)
}

/// Opens a keep-alive connection and completes one request on it, so the server has accepted it.
async fn open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let response = request(&mut stream).await;
    assert!(response.contains("hello 127.0.0.1"), "{response}");
    stream
}

async fn request(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return String::from_utf8_lossy(&seen).into_owned();
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

async fn wait_for(handle: &LimiterHandle, count: u32, shedding: bool) {
    for _ in 0..2000 {
        if handle.count() == count && handle.is_shedding() == shedding {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("listener at {handle:?}, wanted count {count} refusing {shedding}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_mark_new_connections_get_a_canned_503() {
    let (addr, handle) = serve(
        OverLimitPolicy::RespondServiceUnavailable,
        EnforcementMode::Enforce,
    )
    .await;
    let mut open_conns = Vec::new();
    for _ in 0..3 {
        open_conns.push(open(addr).await);
    }
    wait_for(&handle, 3, true).await;

    let mut refused = TcpStream::connect(addr).await.unwrap();
    let answer = request(&mut refused).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("retry-after: 7\r\n"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(
        answer.contains("\"reason\":\"connection_limit\""),
        "{answer}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        refused.read_to_end(&mut rest).await.unwrap(),
        0,
        "the server closed it"
    );

    // The open connections keep being served.
    let mut kept = open_conns.pop().unwrap();
    assert!(request(&mut kept).await.contains("hello"));

    // Close two: 1 open is the low-water mark, so new connections are accepted again.
    drop(kept);
    open_conns.pop();
    wait_for(&handle, 1, false).await;
    let _again = open(addr).await;
    wait_for(&handle, 2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_leaves_new_connections_waiting_until_the_low_water_mark() {
    let (addr, handle) = serve(OverLimitPolicy::PauseAccepting, EnforcementMode::Enforce).await;
    let mut open_conns = Vec::new();
    for _ in 0..3 {
        open_conns.push(open(addr).await);
    }
    wait_for(&handle, 3, true).await;

    // The kernel completes the handshake (backlog), but the server does not accept: no answer.
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(200), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "a paused listener does not answer");
    assert_eq!(handle.count(), 3);

    open_conns.truncate(1);
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut waiting))
        .await
        .expect("accepted once the count fell to low water");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("hello 127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_only_accepts_everything() {
    let (addr, handle) = serve(
        OverLimitPolicy::RespondServiceUnavailable,
        EnforcementMode::ObserveOnly,
    )
    .await;
    let mut open_conns = Vec::new();
    for _ in 0..6 {
        open_conns.push(open(addr).await);
    }
    wait_for(&handle, 6, true).await;
    drop(open_conns);
    wait_for(&handle, 0, false).await;
}

#[test]
fn invalid_configuration_is_an_error() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = {
        let mut config = ConnectionLimitConfig::default();
        config.max_rejecting = 0;
        config
    };
    let err = ConnectionLimitListener::new(tcp, config).unwrap_err();
    assert_eq!(err.key(), "max_rejecting");
    let config = {
        let mut config = ConnectionLimitConfig::default();
        config.high_water = Watermark::fraction(0.5);
        config.low_water = Watermark::fraction(0.7);
        config
    };
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        ConnectionLimitListener::new(tcp, config).unwrap_err().key(),
        "low_water"
    );
}
