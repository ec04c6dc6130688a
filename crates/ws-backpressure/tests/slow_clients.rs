//! A real axum server on `127.0.0.1:0` and real WebSocket clients (tokio-tungstenite): a hub
//! broadcasting to fast clients, a client that stops reading, and one that pauses and resumes.
//!
//! Socket buffers are small on both sides (the server's send buffer, set on the listening socket
//! and inherited by accepted sockets; the client's receive buffer) and axum's own write buffer is
//! the crate's 16 KiB, so a client that stops reading fills the kernel quickly and the queue is
//! what bounds the server's memory.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::ws::WebSocketUpgrade, routing::get};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use palisade_ws_backpressure::{
    Backpressure, BackpressureConfig, CloseReason, Hub, SendOutcome, Sender,
};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::mpsc,
    time::{Instant, sleep, timeout},
};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message as ClientMessage};

/// Over a second of the hub's 3.2 MB/s: the slack a fast reader has before its queue is full,
/// so a busy test machine that stalls a reader task for a moment does not make it "slow".
const HIGH_WATER: usize = 4 * 1024 * 1024;
const MESSAGE: usize = 16 * 1024;
const THRESHOLD: Duration = Duration::from_secs(3);
const CLOSE_TIMEOUT: Duration = Duration::from_millis(100);
const SOCKET_BUFFER: u32 = 16 * 1024;
/// Messages published in the hub test: 16 KiB every 5 ms (3.2 MB/s per client) for 5 s.
const MESSAGES: u64 = 1000;

type Client = WebSocketStream<TcpStream>;

/// Serves `router` from a listener whose accepted sockets inherit a small send buffer.
fn serve(router: Router) -> SocketAddr {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(128).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// A client with a small receive buffer (set before connecting, so the window stays small).
async fn connect(addr: SocketAddr, path: &str) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (client, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream)
        .await
        .unwrap();
    client
}

/// A message with its sequence number first.
fn payload(seq: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(MESSAGE);
    buf.put_u64(seq);
    buf.resize(MESSAGE, 0xab);
    buf.freeze()
}

fn seq_of(message: &ClientMessage) -> Option<u64> {
    match message {
        ClientMessage::Binary(data) => Some(u64::from_be_bytes(data[..8].try_into().unwrap())),
        _ => None,
    }
}

/// Members as they join (name from the query string) and as they leave (reason, when).
#[derive(Clone, Default)]
struct Registry {
    joined: Arc<Mutex<Vec<(String, Sender)>>>,
    left: Arc<Mutex<Vec<(String, CloseReason, Instant)>>>,
}

impl Registry {
    fn sender(&self, name: &str) -> Option<Sender> {
        let joined = self.joined.lock().unwrap();
        joined
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }

    fn left(&self, name: &str) -> Option<(CloseReason, Instant)> {
        let left = self.left.lock().unwrap();
        left.iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, reason, at)| (*reason, *at))
    }
}

fn hub_router(hub: &Hub, registry: &Registry) -> Router {
    let (hub, registry) = (hub.clone(), registry.clone());
    Router::new().route(
        "/ws/{name}",
        get(
            move |upgrade: WebSocketUpgrade,
                  axum::extract::Path(name): axum::extract::Path<String>| {
                let (hub, registry) = (hub.clone(), registry.clone());
                async move {
                    let upgrade = hub.backpressure().configure(upgrade);
                    upgrade.on_upgrade(move |socket| async move {
                        let joined = registry.joined.clone();
                        let member = name.clone();
                        let reason = hub
                            .join_with(socket, move |sender| {
                                joined.lock().unwrap().push((member, sender.clone()));
                            })
                            .await;
                        registry
                            .left
                            .lock()
                            .unwrap()
                            .push((name, reason, Instant::now()));
                    })
                }
            },
        ),
    )
}

fn config() -> BackpressureConfig {
    Backpressure::builder()
        .name("it")
        .send_buffer_high_water(HIGH_WATER)
        .send_buffer_low_water(HIGH_WATER / 4)
        .slow_client_threshold(THRESHOLD)
        .close_timeout(CLOSE_TIMEOUT)
        .config()
        .clone()
}

/// Reads until message `last`, checking that sequence numbers have no gap; returns how many.
async fn read_all_in_order(mut client: Client, last: u64) -> u64 {
    let mut expected = None;
    let mut count = 0;
    while let Some(message) = client.next().await {
        let Some(seq) = seq_of(&message.expect("fast client read")) else {
            continue;
        };
        if let Some(expected) = expected {
            assert_eq!(seq, expected, "fast client: gap or reordering");
        }
        expected = Some(seq + 1);
        count += 1;
        if seq == last {
            break;
        }
    }
    count
}

/// Watches the stalled client's queue from the server side until it is disconnected; checks
/// the disconnect came at the threshold after the queue went above high water. Returns the
/// largest byte count seen.
async fn check_disconnected_at_threshold(
    registry: &Registry,
    stalled_sender: &Sender,
    started: Instant,
) -> usize {
    let mut backpressured_since = None;
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry.left("stalled").is_none() {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never disconnected"
        );
        let stats = stalled_sender.stats();
        peak = peak.max(stats.buffered_bytes);
        backpressured_since = backpressured_since.or(stats.backpressured_since);
        sleep(Duration::from_millis(2)).await;
    }
    let (reason, left_at) = registry.left("stalled").unwrap();
    assert_eq!(reason, CloseReason::SlowClient);
    let since = backpressured_since.expect("the stalled client was backpressured");
    let after = left_at - since;
    eprintln!(
        "stalled client: backpressured {:?} after the first publish, disconnected {after:?} later",
        since - started,
    );
    // The verdict comes at the threshold; the writer then tries the close frame for at most
    // CLOSE_TIMEOUT (the stalled socket cannot take it) before dropping the socket.
    assert!(
        after >= THRESHOLD && after <= THRESHOLD + CLOSE_TIMEOUT + Duration::from_secs(1),
        "disconnected {after:?} after the queue went above high water"
    );
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_disconnected_while_fast_clients_get_everything() {
    let hub = Hub::from_config(config()).unwrap();
    let registry = Registry::default();
    let addr = serve(hub_router(&hub, &registry));

    let fast: Vec<Client> = futures_util::future::join_all(
        (0..3).map(|i| async move { connect(addr, &format!("/ws/fast{i}")).await }),
    )
    .await;
    let stalled = connect(addr, "/ws/stalled").await;
    let mut resuming = connect(addr, "/ws/resuming").await;
    timeout(Duration::from_secs(5), async {
        while hub.connections() < 5 {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every client joined");

    let started = Instant::now();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for seq in 0..MESSAGES {
                tick.tick().await;
                let _ = hub.publish(payload(seq));
            }
        })
    };
    let readers: Vec<_> = fast
        .into_iter()
        .map(|client| tokio::spawn(read_all_in_order(client, MESSAGES - 1)))
        .collect();

    // The resuming client reads nothing for 2 s (its queue passes high water after about
    // 1.3 s), then reads again, long before the threshold.
    let resumed = tokio::spawn(async move {
        sleep(Duration::from_secs(2)).await;
        let mut received = 0;
        while let Some(Ok(message)) = resuming.next().await {
            if seq_of(&message) == Some(MESSAGES - 1) {
                break;
            }
            received += 1;
        }
        (resuming, received)
    });

    let stalled_sender = registry.sender("stalled").expect("stalled joined");
    let peak = check_disconnected_at_threshold(&registry, &stalled_sender, started).await;
    let stats = stalled_sender.stats();
    assert!(
        stats.peak_buffered_bytes > HIGH_WATER,
        "the stalled queue reached high water"
    );
    assert!(
        stats.peak_buffered_bytes <= HIGH_WATER + MESSAGE,
        "never above high water plus one message: {}",
        stats.peak_buffered_bytes
    );
    assert!(peak <= HIGH_WATER + MESSAGE);
    assert_eq!(stalled_sender.try_send("late"), SendOutcome::Closed);

    publisher.await.unwrap();
    for reader in readers {
        let received = timeout(Duration::from_secs(10), reader)
            .await
            .expect("fast clients finish")
            .unwrap();
        // Every message since the client joined (it joined before the first publish).
        assert_eq!(received, MESSAGES, "fast client missed messages");
    }

    let (mut resuming, received) = timeout(Duration::from_secs(10), resumed)
        .await
        .expect("the resuming client finishes")
        .unwrap();
    assert!(received > 0);
    let resuming_sender = registry.sender("resuming").unwrap();
    let resuming_stats = resuming_sender.stats();
    assert!(
        resuming_stats.dropped_messages > 0,
        "the resuming client's pause did backpressure it"
    );
    assert!(
        registry.left("resuming").is_none() && !resuming_sender.is_closed(),
        "a client that resumed before the threshold is kept"
    );
    // And it still receives.
    let _ = hub.publish(payload(u64::MAX));
    let message = timeout(Duration::from_secs(5), resuming.next())
        .await
        .expect("still delivered")
        .unwrap()
        .unwrap();
    assert_eq!(seq_of(&message), Some(u64::MAX));

    // The stalled client, reading at last, finds its connection ended (it gets what the kernel
    // buffered, then the end of the stream or a reset: the close frame could not be written).
    let mut stalled = stalled;
    let ended = timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stalled.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stalled client's connection was closed");
    // The fast readers dropped their clients after the last message: only `resuming` is left.
    timeout(Duration::from_secs(5), async {
        while hub.connections() > 1 {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("clients that went away left the hub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_line_route_serves_broadcasts_and_members_leave_cleanly() {
    let hub = Hub::from_config(BackpressureConfig::default()).unwrap();
    let addr = serve(Router::new().route("/ws", hub.route()));
    let mut clients = vec![connect(addr, "/ws").await, connect(addr, "/ws").await];
    timeout(Duration::from_secs(5), async {
        while hub.connections() < 2 {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let report = hub.publish("hello");
    assert_eq!(report.queued, 2);
    for client in &mut clients {
        let message = timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(message, ClientMessage::text("hello"));
    }
    // A client that closes leaves the hub.
    let mut leaving = clients.pop().unwrap();
    leaving.close(None).await.unwrap();
    timeout(Duration::from_secs(5), async {
        while hub.connections() > 1 {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the closed client left the hub");
    // Shutdown closes the rest with a close frame the client receives.
    let frame = axum::extract::ws::CloseFrame {
        code: 1001,
        reason: "shutting down".into(),
    };
    assert_eq!(hub.close_all(Some(frame)), 1);
    let mut remaining = clients.pop().unwrap();
    let message = timeout(Duration::from_secs(5), remaining.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match message {
        ClientMessage::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1001);
            assert_eq!(frame.reason.as_str(), "shutting down");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_gives_a_sender_that_waits_and_a_receiver_for_one_connection() {
    let backpressure = Backpressure::from_config(config()).unwrap();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let router = Router::new().route(
        "/echo",
        get(move |upgrade: WebSocketUpgrade| {
            let backpressure = backpressure.clone();
            let done = done_tx.clone();
            async move {
                backpressure
                    .configure(upgrade)
                    .on_upgrade(move |socket| async move {
                        let (sender, mut receiver) = backpressure.split(socket);
                        while let Some(Ok(message)) = receiver.recv().await {
                            if let axum::extract::ws::Message::Text(text) = message {
                                // Echo twice: from this task and from another one.
                                let outcome = sender.send(text.as_str()).await.unwrap();
                                assert!(outcome.is_queued());
                                let other = sender.clone();
                                let outcome = tokio::spawn(async move {
                                    other.send(format!("again: {}", text.as_str())).await
                                })
                                .await
                                .unwrap()
                                .unwrap();
                                assert!(outcome.is_queued());
                            }
                        }
                        let _ = done.send(sender.closed().await);
                    })
            }
        }),
    );
    let addr = serve(router);
    let mut client = connect(addr, "/echo").await;
    client.send(ClientMessage::text("ping")).await.unwrap();
    for expected in ["ping", "again: ping"] {
        let message = timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(message, ClientMessage::text(expected));
    }
    client.close(None).await.unwrap();
    let reason = timeout(Duration::from_secs(5), done_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, CloseReason::ClientClosed);
}
