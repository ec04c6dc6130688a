//! `soak`: the example server as it ships (the preset, `palisade::serve`, its Prometheus recorder
//! and log subscriber, its rate limit, bulkheads, breaker and WebSocket hub) through a million
//! requests of a realistic mix, with its resident memory, open file descriptors and live tasks
//! sampled all along. `--duration 24h` runs as long as asked instead.
//!
//! The mix, offered at a fixed rate from a thousand clients (`X-Forwarded-For`, which the server
//! is told to trust from loopback, so each client stays under the example's 20 requests a
//! second): hello world, the JSON catalogue and one item, slow requests, heavy `sheddable`
//! requests that fill the in-flight limit past where the shedder refuses them (`503`), one
//! client far over its rate
//! (`429`), hostile targets (`400` from the request guard), and `/api/flaky`, whose dependency the
//! harness breaks for a while every minute, so its breaker opens and closes again. WebSocket
//! clients connect to `/ws` every 200 ms, read for a second and a half and leave.
//!
//! The growth reported is between the 10% mark (after warm-up: pools, caches, the rate limiter's
//! thousand keys) and the end: the median of the samples from 10% to 15% of the run against the
//! median of the last 5%.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::{Row, out_dir},
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

pub(super) struct Soak;

/// Requests per second offered: an ordinary busy service, far from the example's capacity, so
/// what grows is what leaks, not a queue.
const RATE: f64 = 2_000.0;
/// A full run, and a `--quick` one.
const REQUESTS: u64 = 1_000_000;
const QUICK_REQUESTS: u64 = 60_000;
/// The clients the ordinary traffic comes from.
const CLIENTS: u32 = 1_000;
/// The one client sending far over its limit (a documentation address).
const GREEDY_CLIENT: &str = "192.0.2.1";

/// One sample of the server process.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    /// Seconds since the load started.
    t_s: f64,
    rss_mib: f64,
    fds: u64,
    /// Tasks alive on the server's runtime (`/admin/status`).
    tasks: Option<u64>,
    /// The dependency breaker's state.
    breaker: Option<String>,
}

impl Scenario for Soak {
    fn name(&self) -> &'static str {
        "soak"
    }

    fn title(&self) -> &'static str {
        "soak: the example server through a million requests of a realistic mix"
    }

    fn server(&self, system: &str, _args: &ServerArgs) -> Result<App, String> {
        Err(format!(
            "soak runs the example server's own binary, not bench-server ({system:?})"
        ))
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(run(timing))
    }
}

fn class(name: &str, path: &str, weight: u32) -> RequestClass {
    RequestClass {
        weight,
        clients: Some(CLIENTS),
        ..RequestClass::get(name, path)
    }
}

fn mix() -> Vec<RequestClass> {
    let sheddable = (
        HeaderName::from_static("x-priority"),
        HeaderValue::from_static("sheddable"),
    );
    let greedy = (
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_static(GREEDY_CLIENT),
    );
    vec![
        class("hello", "/", 40),
        class("JSON list", "/api/items", 25),
        class("JSON item", "/api/items/2", 8),
        class("slow 20 ms", "/api/slow?ms=20", 5),
        RequestClass {
            headers: vec![sheddable],
            ..class("heavy sheddable 600 ms", "/api/slow?ms=600", 2)
        },
        class("flaky dependency", "/api/flaky", 10),
        RequestClass {
            headers: vec![greedy],
            clients: None,
            ..class("one client over its limit", "/api/items", 2)
        },
        class("hostile target", "/api/items/..%2f..%2fetc%2fpasswd", 3),
        class("no such route", "/nope", 2),
    ]
}

async fn run(timing: Timing) -> Result<Vec<Row>, String> {
    let quick = timing.duration < Timing::FULL.duration;
    let length = timing.length.unwrap_or_else(|| {
        let requests = if quick { QUICK_REQUESTS } else { REQUESTS };
        Duration::from_secs_f64(requests as f64 / RATE)
    });
    let ops_port = free_port()?;
    let ops: SocketAddr = ([127, 0, 0, 1], ops_port).into();
    let server = ServerProcess::start_program(
        &example_binary()?,
        &[],
        &[
            ("PALISADE_ADDR", "127.0.0.1:0"),
            ("PALISADE_OPS_ADDR", &ops.to_string()),
            ("PALISADE_RATE_LIMIT__TRUSTED_PROXIES", "[\"127.0.0.0/8\"]"),
            ("RUST_LOG", "info"),
            ("NO_COLOR", "1"),
        ],
    )?;
    wait_for_status(ops).await?;
    println!(
        "soak: {:.0} requests at {RATE:.0}/s ({}), the example server on {} (ops {ops})",
        length.as_secs_f64() * RATE,
        human(length),
        server.addr
    );

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let interval = (length / 1000).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let sampling = tokio::spawn(sample(server.pid(), ops, started, interval, stop.clone()));
    let websockets = tokio::spawn(websocket_churn(server.addr, stop.clone()));
    let (break_every, broken_for) = if quick {
        (Duration::from_secs(10), Duration::from_secs(3))
    } else {
        (Duration::from_secs(60), Duration::from_secs(15))
    };
    let breaker = tokio::spawn(break_dependency(ops, break_every, broken_for, stop.clone()));

    let report = load::run(LoadSpec {
        target: server.addr,
        mode: Mode::OpenLoop { rate: RATE },
        connections: 64,
        duration: length,
        warmup: Duration::ZERO,
        grace: Duration::from_secs(5),
        mix: mix(),
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampling.await.map_err(|e| e.to_string())?;
    let ws = websockets.await.map_err(|e| e.to_string())?;
    let breaks = breaker.await.map_err(|e| e.to_string())?;
    let report = report?;
    drop(server);

    let growth = Growth::of(&samples, length.as_secs_f64());
    let mut rows = Row::from_report("example server", Some(RATE), &report);
    if let Some(all) = rows.first_mut() {
        all.server_peak_rss_mib = samples.iter().map(|s| s.rss_mib).reduce(f64::max);
        all.rss_growth_ratio = growth.rss_ratio;
        all.fd_growth = growth.fds;
        all.task_growth = growth.tasks;
    }
    let trips = samples
        .windows(2)
        .filter(|w| {
            w[0].breaker.as_deref() == Some("closed") && w[1].breaker.as_deref() == Some("open")
        })
        .count();
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "soak: {} requests in {}; WebSocket clients {} connected, {} messages, {} failed; \
         dependency broken {breaks} times, breaker seen opening {trips} times",
        report.total().completed(),
        human(length),
        ws.connected.load(Ordering::Relaxed),
        ws.messages.load(Ordering::Relaxed),
        ws.failed.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        summary,
        "soak: from the 10% mark to the end: RSS {}, file descriptors {}, tasks {}",
        growth
            .rss_ratio
            .map_or("unknown".into(), |r| format!("{:+.2}%", r * 100.0)),
        growth.fds.map_or("unknown".into(), |d| format!("{d:+}")),
        growth.tasks.map_or("unknown".into(), |d| format!("{d:+}")),
    );
    print!("{summary}");
    let path = out_dir().join("soak-samples.json");
    let json = serde_json::to_string_pretty(&samples).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(rows)
}

/// Growth from the 10% mark to the end.
struct Growth {
    rss_ratio: Option<f64>,
    fds: Option<i64>,
    tasks: Option<i64>,
}

impl Growth {
    fn of(samples: &[Sample], length_s: f64) -> Self {
        let window = |from: f64, to: f64| -> Vec<&Sample> {
            samples
                .iter()
                .filter(|s| s.t_s >= from * length_s && s.t_s <= to * length_s)
                .collect()
        };
        let (early, late) = (window(0.10, 0.15), window(0.95, 1.0));
        let rss = |w: &[&Sample]| median(w.iter().map(|s| s.rss_mib).collect());
        #[allow(clippy::cast_precision_loss)] // descriptor and task counts are small
        let fds = |w: &[&Sample]| median(w.iter().map(|s| s.fds as f64).collect());
        #[allow(clippy::cast_precision_loss)]
        let tasks =
            |w: &[&Sample]| median(w.iter().filter_map(|s| s.tasks).map(|t| t as f64).collect());
        #[allow(clippy::cast_possible_truncation)] // differences of small counts
        let diff = |a: Option<f64>, b: Option<f64>| Some((b? - a?).round() as i64);
        Self {
            rss_ratio: rss(&early).zip(rss(&late)).map(|(a, b)| b / a - 1.0),
            fds: diff(fds(&early), fds(&late)),
            tasks: diff(tasks(&early), tasks(&late)),
        }
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Samples the server every `interval` until `stop`.
async fn sample(
    pid: u32,
    ops: SocketAddr,
    started: Instant,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(interval);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Some(rss_mib) = rss_mib(pid) else { break };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
        let status = get_json(ops, "/admin/status").await;
        samples.push(Sample {
            t_s: started.elapsed().as_secs_f64(),
            rss_mib,
            fds,
            tasks: status
                .as_ref()
                .and_then(|s| s["runtime"]["alive_tasks"].as_u64()),
            breaker: status
                .as_ref()
                .and_then(|s| s["breaker"]["state"].as_str().map(str::to_owned)),
        });
    }
    samples
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[derive(Default)]
struct WsCounts {
    connected: AtomicU64,
    messages: AtomicU64,
    failed: AtomicU64,
}

/// A WebSocket client every 200 ms: it reads for 1.5 s (the hub broadcasts every second) and
/// closes; about eight are connected at any time.
async fn websocket_churn(addr: SocketAddr, stop: Arc<AtomicBool>) -> Arc<WsCounts> {
    let counts = Arc::new(WsCounts::default());
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut clients = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        while clients.try_join_next().is_some() {}
        let counts = counts.clone();
        clients.spawn(async move {
            if websocket_client(addr, &counts).await.is_err() {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while clients.join_next().await.is_some() {}
    counts
}

async fn websocket_client(addr: SocketAddr, counts: &WsCounts) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut client, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .map_err(|e| e.to_string())?;
    counts.connected.fetch_add(1, Ordering::Relaxed);
    let until = Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(message)) = tokio::time::timeout_at(until, client.next()).await {
        message.map_err(|e| e.to_string())?;
        counts.messages.fetch_add(1, Ordering::Relaxed);
    }
    client.close(None).await.map_err(|e| e.to_string())?;
    // Until the server's close frame, so the server ends the connection, not a reset.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(1), client.next()).await {}
    Ok(())
}

/// Breaks the example's dependency for `broken_for` every `every`, through its operators' routes;
/// returns how many times it did.
async fn break_dependency(
    ops: SocketAddr,
    every: Duration,
    broken_for: Duration,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut breaks = 0;
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() < next {
            continue;
        }
        if post(ops, "/admin/dependency/fail").await {
            breaks += 1;
        }
        let heal_at = Instant::now() + broken_for;
        while Instant::now() < heal_at && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        post(ops, "/admin/dependency/heal").await;
        next = Instant::now() + every;
    }
    breaks
}

/// One request on a connection of its own (`Connection: close`), the response read to its end.
async fn exchange(addr: SocketAddr, method: &str, path: &str) -> Option<String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

async fn post(addr: SocketAddr, path: &str) -> bool {
    exchange(addr, "POST", path)
        .await
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

async fn get_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let response = exchange(addr, "GET", path).await?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Waits (up to 30 s) until the operators' port answers.
async fn wait_for_status(ops: SocketAddr) -> Result<(), String> {
    for _ in 0..300 {
        if get_json(ops, "/admin/status").await.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the example's operations port {ops} never answered /admin/status"
    ))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The example server's binary: `PALISADE_BENCH_EXAMPLE` (as `cargo xtask bench soak` builds
/// it), else beside this program.
fn example_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PALISADE_BENCH_EXAMPLE") {
        return Ok(path.into());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me.with_file_name("production_server");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `cargo xtask bench soak`, which builds it",
            path.display()
        ))
    }
}

fn human(length: Duration) -> String {
    let s = length.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        _ => format!("{:.1} h", length.as_secs_f64() / 3600.0),
    }
}
