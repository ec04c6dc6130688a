//! `ws`: a WebSocket broadcast to fast clients while a few clients stall (connected, never
//! reading). Fast clients' delivery latency and the server's memory, with Palisade's bounded
//! per-client queues against the naive axum broadcast (one unbounded channel per client), each
//! with and without stalled clients.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::ws::{Message, WebSocketUpgrade},
    routing::get,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use palisade_ws_backpressure::{Backpressure, Hub};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::mpsc,
    time::{Instant, sleep_until, timeout_at},
};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message as ClientMessage};

use crate::{
    process::ServerProcess,
    report::Row,
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

/// A publisher connection sends messages to `/publish` on a fixed timetable (open loop), each
/// carrying its sequence number and its *intended* send time (wall clock, shared by the two
/// processes); the server broadcasts them to every client of `/ws`. [`FAST`] clients read
/// everything and record each message's delay from its intended send time; [`STALLED`] clients
/// connect and never read. The server's `VmHWM` (peak RSS) and `VmRSS` growth over the measured
/// time come from `/proc/<pid>/status`.
///
/// Palisade's hub runs with the crate defaults (1 MiB high water per client, drop newest, slow
/// clients disconnected after 60 s, so never within the run): its memory is bounded by the queues,
/// not by disconnecting. The naive server queues every message for a stalled client forever.
pub(super) struct WsBroadcast;

const SYSTEMS: [(&str, &str); 2] = [
    ("palisade-hub", "palisade hub"),
    ("naive-mpsc", "naive (unbounded mpsc per client)"),
];

/// Clients that read everything.
const FAST: usize = 16;
/// Clients that never read. Linux lets each connection's send buffer grow to `tcp_wmem` max
/// (4 MiB) before the server's own queue sees anything, so a stalled client is felt after about
/// one second at this rate.
const STALLED: usize = 8;
/// Messages published per second.
const RATE: f64 = 1000.0;
/// Bytes per message (4 MB/s per client).
const SIZE: usize = 4096;
/// The stalled clients' socket receive buffer.
const STALLED_RECEIVE_BUFFER: u32 = 4096;

fn wall_clock_ns() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

fn palisade_hub() -> Result<Router, String> {
    let hub = Hub::with_backpressure(
        Backpressure::builder()
            .name("bench")
            .build()
            .map_err(|e| e.to_string())?,
    );
    let publisher = hub.clone();
    Ok(Router::new().route("/ws", hub.route()).route(
        "/publish",
        get(move |upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(move |mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Binary(_)) {
                        let _ = publisher.publish(message);
                    }
                }
            })
        }),
    ))
}

/// What naive axum broadcast servers do: each client gets an unbounded channel and a task that
/// awaits `send` on its socket for every message.
fn naive_mpsc() -> Router {
    type Clients = Arc<Mutex<Vec<mpsc::UnboundedSender<Message>>>>;
    let clients: Clients = Arc::default();
    let publish_to = clients.clone();
    Router::new()
        .route(
            "/ws",
            get(move |upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(move |socket| async move {
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    clients.lock().expect("clients").push(tx);
                    let (mut sink, mut stream) = socket.split();
                    let writer = async move {
                        while let Some(message) = rx.recv().await {
                            if sink.send(message).await.is_err() {
                                break;
                            }
                        }
                    };
                    let reader = async move { while let Some(Ok(_)) = stream.next().await {} };
                    tokio::select! {
                        () = writer => {}
                        () = reader => {}
                    }
                })
            }),
        )
        .route(
            "/publish",
            get(move |upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(move |mut socket| async move {
                    while let Some(Ok(message)) = socket.recv().await {
                        if matches!(message, Message::Binary(_)) {
                            publish_to
                                .lock()
                                .expect("clients")
                                .retain(|client| client.send(message.clone()).is_ok());
                        }
                    }
                })
            }),
        )
}

type Client = WebSocketStream<TcpStream>;

/// A client; `receive_buffer` pins its socket's receive buffer (no autotuning), as a client on a
/// slow or dead network has little in flight.
async fn connect(
    addr: SocketAddr,
    path: &str,
    receive_buffer: Option<u32>,
) -> Result<Client, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(bytes) = receive_buffer {
        socket
            .set_recv_buffer_size(bytes)
            .map_err(|e| e.to_string())?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (client, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream)
        .await
        .map_err(|e| format!("WebSocket handshake with {addr}{path}: {e}"))?;
    Ok(client)
}

/// `VmHWM` and `VmRSS` of `pid`, in MiB.
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The measured window and the last message, as the readers see them.
#[derive(Clone, Copy)]
struct Window {
    from_ns: u64,
    until_ns: u64,
    last_seq: u64,
    give_up: Instant,
}

struct ReaderResult {
    histogram: Histogram<u64>,
    received: u64,
    error: bool,
}

/// Reads until the last message or `give_up`; records delays of messages sent in the window.
async fn read_all(mut client: Client, window: Window) -> ReaderResult {
    let mut result = ReaderResult {
        histogram: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
        received: 0,
        error: false,
    };
    loop {
        let Ok(next) = timeout_at(window.give_up, client.next()).await else {
            break;
        };
        let Some(Ok(message)) = next else {
            result.error = true;
            break;
        };
        let ClientMessage::Binary(data) = message else {
            continue;
        };
        if data.len() < 16 {
            continue;
        }
        let seq = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
        let sent_ns = u64::from_be_bytes(data[8..16].try_into().expect("8 bytes"));
        if (window.from_ns..window.until_ns).contains(&sent_ns) {
            let delay_us = wall_clock_ns().saturating_sub(sent_ns) / 1000;
            let _ = result.histogram.record(delay_us.max(1));
            result.received += 1;
        }
        if seq == window.last_seq {
            break;
        }
    }
    result
}

struct RunResult {
    histogram: Histogram<u64>,
    received: u64,
    expected: u64,
    errors: u64,
    peak_rss_mib: Option<f64>,
    rss_growth_mib: Option<f64>,
}

async fn run_one(
    scenario: &str,
    system: &str,
    stalled: usize,
    timing: Timing,
) -> Result<RunResult, String> {
    let server = ServerProcess::start(scenario, system, &ServerArgs::default())?;
    let (addr, pid) = (server.addr, server.pid());
    let mut fast = Vec::with_capacity(FAST);
    for _ in 0..FAST {
        fast.push(connect(addr, "/ws", None).await?);
    }
    // Connected, never read: their small socket buffers fill at once, then the server's queue
    // for them does (or, in the naive server, its unbounded channel).
    let mut stalled_clients = Vec::with_capacity(stalled);
    for _ in 0..stalled {
        stalled_clients.push(connect(addr, "/ws", Some(STALLED_RECEIVE_BUFFER)).await?);
    }
    let mut publisher = connect(addr, "/publish", None).await?;

    let period_ns = 1e9 / RATE;
    let total = ((timing.warmup + timing.duration).as_secs_f64() * RATE).round();
    // Both are far below 2^52: the conversions are exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (total, period_ns) = (total as u64, period_ns as u64);
    let start = Instant::now() + Duration::from_millis(100);
    let start_ns = wall_clock_ns() + 100_000_000;
    let measure_from = start + timing.warmup;
    let window = Window {
        from_ns: start_ns + u64::try_from(timing.warmup.as_nanos()).unwrap_or(u64::MAX),
        until_ns: start_ns + total * period_ns,
        last_seq: total - 1,
        give_up: start + timing.warmup + timing.duration + timing.grace,
    };
    let readers: Vec<_> = fast
        .into_iter()
        .map(|client| tokio::spawn(read_all(client, window)))
        .collect();
    let rss_at_start = tokio::spawn(async move {
        sleep_until(measure_from).await;
        memory_mib(pid).map(|(_, rss)| rss)
    });

    let mut payload = BytesMut::with_capacity(SIZE);
    for seq in 0..total {
        let offset = seq * period_ns;
        sleep_until(start + Duration::from_nanos(offset)).await;
        payload.put_u64(seq);
        payload.put_u64(start_ns + offset);
        payload.resize(SIZE, 0x5a);
        let message: Bytes = payload.split().freeze();
        publisher
            .send(ClientMessage::Binary(message))
            .await
            .map_err(|e| format!("publish: {e}"))?;
    }
    let rss_start = rss_at_start.await.map_err(|e| e.to_string())?;
    let at_end = memory_mib(pid);

    let mut histogram = Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
    let (mut received, mut errors) = (0, 0);
    for reader in readers {
        let result = reader.await.map_err(|e| e.to_string())?;
        histogram
            .add(&result.histogram)
            .map_err(|e| e.to_string())?;
        received += result.received;
        errors += u64::from(result.error);
    }
    drop(stalled_clients);
    let measured = window
        .until_ns
        .saturating_sub(window.from_ns)
        .div_ceil(period_ns);
    Ok(RunResult {
        histogram,
        received,
        expected: measured * FAST as u64,
        errors,
        peak_rss_mib: at_end.map(|(hwm, _)| hwm),
        rss_growth_mib: match (rss_start, at_end) {
            (Some(start), Some((_, end))) => Some(end - start),
            _ => None,
        },
    })
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn to_row(name: &str, stalled: usize, timing: Timing, result: &RunResult) -> Row {
    let secs = timing.duration.as_secs_f64();
    let h = &result.histogram;
    let deliveries = result.received as f64 / secs;
    Row {
        system: if stalled == 0 {
            format!("{name}, no stalled client")
        } else {
            format!("{name}, {stalled} stalled")
        },
        class: "all".into(),
        offered_rps: Some(RATE * FAST as f64),
        achieved_rps: deliveries,
        goodput_rps: deliveries,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        errors: result.errors,
        rejected: 0,
        reject_p99_ms: None,
        timed_out: result.expected.saturating_sub(result.received),
        ratio_to_baseline: None,
        ratio_to_peer_stack: None,
        configuration: None,
        path: None,
        server_peak_rss_mib: result.peak_rss_mib,
        server_rss_growth_mib: result.rss_growth_mib,
        ..Row::default()
    }
}

impl Scenario for WsBroadcast {
    fn name(&self) -> &'static str {
        "ws"
    }

    fn title(&self) -> &'static str {
        "ws: broadcast to 16 fast clients (+8 stalled), 1000 msg/s x 4 KiB, delivery delay"
    }

    fn server(&self, system: &str, _args: &ServerArgs) -> Result<App, String> {
        match system {
            "palisade-hub" => Ok(App::AxumNoDelay(palisade_hub()?)),
            "naive-mpsc" => Ok(App::AxumNoDelay(naive_mpsc())),
            other => Err(format!("ws has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            // Rounds alternate the four runs; each keeps its median round by fast clients' p99.
            let configs: Vec<(&str, &str, usize)> = SYSTEMS
                .iter()
                .flat_map(|&(id, name)| [(id, name, 0), (id, name, STALLED)])
                .collect();
            let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); configs.len()];
            for round in 0..timing.rounds {
                for (index, &(id, name, stalled)) in configs.iter().enumerate() {
                    let result = run_one(self.name(), id, stalled, timing).await?;
                    let row = to_row(name, stalled, timing, &result);
                    eprintln!(
                        "round {} {:<52} {:>6.0} msg/s p50 {:>6.2} ms p99 {:>7.2} ms peak RSS {:>6.1} MiB (+{:.1} MiB) missed {}",
                        round + 1,
                        row.system,
                        row.achieved_rps,
                        row.p50_ms,
                        row.p99_ms,
                        row.server_peak_rss_mib.unwrap_or(f64::NAN),
                        row.server_rss_growth_mib.unwrap_or(f64::NAN),
                        row.timed_out,
                    );
                    rounds[index].push(row);
                }
            }
            let mut rows: Vec<Row> = rounds
                .into_iter()
                .map(|mut runs| {
                    runs.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
                    runs.swap_remove(runs.len() / 2)
                })
                .collect();
            // The comparison: each system's fast-client p99 against its own run without stalled
            // clients (the goal for Palisade: at most 1.2x).
            for pair in rows.chunks_mut(2) {
                if let [calm, stalled] = pair {
                    let base = calm.p99_ms;
                    calm.ratio_to_baseline = Some(1.0);
                    stalled.ratio_to_baseline = Some(stalled.p99_ms / base);
                }
            }
            for row in rows
                .iter()
                .filter(|r| r.system.ends_with("stalled") && !r.system.contains("no stalled"))
            {
                eprintln!(
                    "{}: fast clients' p99 {:.2}x the run without stalled clients; server RSS +{:.1} MiB while measured",
                    row.system,
                    row.ratio_to_baseline.unwrap_or(f64::NAN),
                    row.server_rss_growth_mib.unwrap_or(f64::NAN),
                );
            }
            Ok(rows)
        })
    }
}
