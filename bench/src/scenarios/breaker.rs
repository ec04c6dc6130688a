//! `breaker`: a dependency that fails for 10 s and then heals, behind an unprotected server and
//! behind Palisade's per-route circuit breaker.
//!
//! The server has one bounded pool of 8 workers (a database connection pool, say) shared by two
//! routes: `/flaky` calls the dependency (10 ms when healthy; when failing it hangs 250 ms and
//! then errors, like a connection timeout, and answers 502) and `/work` does 10 ms of its own
//! work. The load is open loop, 100 requests/s on each route. The scenario breaks the dependency
//! 1 s into the measured window (`POST /admin/fail`) and mends it 10 s later
//! (`POST /admin/heal`).
//!
//! The timeline numbers printed before the table:
//!
//! - time to open: from the failure to the breaker opening, and time to close: from the heal to
//!   the breaker closing, both measured in the server (its state-change callback against the
//!   moments the admin requests arrived; `GET /admin/timeline`);
//! - fast-fail latency: p50 / p99 of the 503s an observer sees while the dependency is failing
//!   (the observer sends `GET /flaky` every 20 ms on its own connection and records each
//!   answer), and the p99 of every 5xx it sees then (for the unprotected server, its 502s, which
//!   wait for the dependency's timeout and the queue);
//! - time to recover: from the heal to the answer of the first observer request sent after it that is
//!   served normally (200 within [`NORMAL`]); a server still draining a queue has not recovered
//!   for its clients even though queued requests now succeed.
//!
//! The table has the goodput of the whole window per system and per route, and one more row per
//! system, class `all ≤500ms`: successes answered within [`BUDGET`] per second, since a success
//! that took seconds in a queue has usually been given up on by its client. The ratio column is
//! against the unprotected server's row of the same class.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use palisade_circuit_breaker::{
    Breaker as CircuitBreakerHandle, CircuitBreakerLayer, State as BreakerState,
};
use tokio::{net::TcpStream, sync::Semaphore, time::Instant};

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::Row,
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

/// The unprotected server and the same server with a per-route breaker.
pub(super) struct Breaker;

const SYSTEMS: [(&str, &str); 2] = [
    ("unprotected", "unprotected"),
    ("palisade-breaker", "palisade circuit breaker"),
];

/// Requests per second on each route.
const RATE_PER_ROUTE: f64 = 100.0;
/// Healthy time before the failure, inside the measured window.
const HEALTHY_BEFORE: Duration = Duration::from_secs(1);
/// How long the dependency fails.
const FAILING: Duration = Duration::from_secs(10);
/// How often the observer asks.
const OBSERVER_EVERY: Duration = Duration::from_millis(20);
/// The breaker's open wait: how long it rejects before probing again.
const OPEN_WAIT: Duration = Duration::from_secs(2);
/// An answer this fast is normal service.
const NORMAL: Duration = Duration::from_millis(100);
/// The latency budget of the `all ≤500ms` goodput row.
const BUDGET: Duration = Duration::from_millis(500);

/// The dependency and the worker pool it shares with `/work`.
#[derive(Clone)]
struct Backend {
    pool: Arc<Semaphore>,
    failing: Arc<AtomicBool>,
    events: Arc<Mutex<Events>>,
}

/// When things happened in the server.
#[derive(Debug, Default)]
struct Events {
    failed: Option<Instant>,
    healed: Option<Instant>,
    opened: Option<Instant>,
    closed: Option<Instant>,
}

impl Events {
    fn json(&self) -> serde_json::Value {
        let after = |a: Option<Instant>, b: Option<Instant>| {
            a.zip(b)
                .map(|(start, end)| end.saturating_duration_since(start).as_secs_f64() * 1000.0)
        };
        serde_json::json!({
            "open_after_ms": after(self.failed, self.opened),
            "closed_after_ms": after(self.healed, self.closed),
        })
    }
}

impl Backend {
    fn new() -> Self {
        Self {
            pool: Arc::new(Semaphore::new(8)),
            failing: Arc::new(AtomicBool::new(false)),
            events: Arc::new(Mutex::new(Events::default())),
        }
    }

    /// Notes the breaker's first opening after the failure and first closing after the heal.
    fn on_state_change(&self, to: BreakerState) {
        let mut events = self.events.lock().expect("events");
        let now = Instant::now();
        match to {
            BreakerState::Open if events.failed.is_some() && events.opened.is_none() => {
                events.opened = Some(now);
            }
            BreakerState::Closed if events.healed.is_some() && events.closed.is_none() => {
                events.closed = Some(now);
            }
            _ => {}
        }
    }

    async fn flaky(State(backend): State<Backend>) -> (StatusCode, &'static str) {
        let _slot = backend.pool.acquire().await.expect("pool open");
        if backend.failing.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            (StatusCode::BAD_GATEWAY, "the dependency timed out")
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            (StatusCode::OK, "fresh data")
        }
    }

    async fn work(State(backend): State<Backend>) -> &'static str {
        let _slot = backend.pool.acquire().await.expect("pool open");
        tokio::time::sleep(Duration::from_millis(10)).await;
        "done"
    }
}

/// A timed answer seen by the observer.
#[derive(Debug, Clone, Copy)]
struct Seen {
    sent: Instant,
    received: Instant,
    status: u16,
}

/// What the observer's timeline says about one system.
#[derive(Debug, Clone)]
struct Timeline {
    system: &'static str,
    time_to_open: Option<Duration>,
    time_to_close: Option<Duration>,
    fast_fail_p50: Option<Duration>,
    fast_fail_p99: Option<Duration>,
    failure_p99: Option<Duration>,
    time_to_recover: Option<Duration>,
    answers: usize,
}

fn quantile(mut values: Vec<Duration>, q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    // An index into a non-empty vector.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    Some(values[index])
}

impl Timeline {
    fn from(
        system: &'static str,
        seen: &[Seen],
        server: &serde_json::Value,
        fail_at: Instant,
        heal_at: Instant,
    ) -> Self {
        let server_ms = |key: &str| {
            server[key]
                .as_f64()
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        };
        let failing = |s: &&Seen| s.sent >= fail_at && s.received < heal_at;
        let latency = |s: &Seen| s.received - s.sent;
        let rejections: Vec<Duration> = seen
            .iter()
            .filter(failing)
            .filter(|s| s.status == 503)
            .map(latency)
            .collect();
        let failures: Vec<Duration> = seen
            .iter()
            .filter(failing)
            .filter(|s| s.status >= 500)
            .map(latency)
            .collect();
        Self {
            system,
            time_to_open: server_ms("open_after_ms"),
            time_to_close: server_ms("closed_after_ms"),
            fast_fail_p50: quantile(rejections.clone(), 0.5),
            fast_fail_p99: quantile(rejections, 0.99),
            failure_p99: quantile(failures, 0.99),
            time_to_recover: seen
                .iter()
                .find(|s| s.sent >= heal_at && s.status == 200 && latency(s) <= NORMAL)
                .map(|s| s.received.saturating_duration_since(heal_at)),
            answers: seen.len(),
        }
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2}", d.as_secs_f64() * 1000.0),
    )
}

async fn connect(target: std::net::SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request on `sender` (reconnecting if the connection closed); the status and the body.
async fn send(
    target: std::net::SocketAddr,
    sender: &mut Option<SendRequest<Empty<Bytes>>>,
    method: Method,
    path: &str,
) -> Result<(u16, Bytes), String> {
    if sender.as_ref().is_none_or(SendRequest::is_closed) {
        *sender = Some(connect(target).await?);
    }
    let s = sender.as_mut().ok_or("not connected")?;
    s.ready().await.map_err(|e| e.to_string())?;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, target.to_string())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = s.send_request(request).await.map_err(|e| {
        *sender = None;
        e.to_string()
    })?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Asks `/flaky` every [`OBSERVER_EVERY`] from `from` until `until`, one request at a time.
async fn observe(
    target: std::net::SocketAddr,
    from: Instant,
    until: Instant,
) -> Result<Vec<Seen>, String> {
    tokio::time::sleep_until(from).await;
    let mut sender = None;
    let mut seen = Vec::new();
    let mut next = from;
    while next < until {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        if let Ok((status, _)) = send(target, &mut sender, Method::GET, "/flaky").await {
            seen.push(Seen {
                sent,
                received: Instant::now(),
                status,
            });
        }
        next += OBSERVER_EVERY;
        // A slow answer does not make the observer catch up in a burst.
        next = next.max(Instant::now());
    }
    Ok(seen)
}

/// Breaks the dependency at `fail_at`, mends it at `heal_at`, and after `end` asks the server
/// when its breaker opened and closed.
async fn schedule(
    target: std::net::SocketAddr,
    fail_at: Instant,
    heal_at: Instant,
    end: Instant,
) -> Result<serde_json::Value, String> {
    let mut sender = None;
    tokio::time::sleep_until(fail_at).await;
    send(target, &mut sender, Method::POST, "/admin/fail").await?;
    tokio::time::sleep_until(heal_at).await;
    // Fresh connections: the previous one may have been idle for a while.
    sender = None;
    send(target, &mut sender, Method::POST, "/admin/heal").await?;
    tokio::time::sleep_until(end).await;
    sender = None;
    let (_, body) = send(target, &mut sender, Method::GET, "/admin/timeline").await?;
    serde_json::from_slice(&body).map_err(|e| format!("timeline: {e}"))
}

/// The timeline table, printed before the main table.
fn print_timelines<'a>(timelines: impl Iterator<Item = &'a Timeline>) {
    println!(
        "\nbreaker timeline (observer: GET /flaky every {} ms; dependency failing for {} s):\n\n\
         | system | time to open ms | fast-fail p50 ms | fast-fail p99 ms | 5xx p99 while failing ms | time to close ms | time to recover ms (200 in ≤{} ms) | observer answers |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|",
        OBSERVER_EVERY.as_millis(),
        FAILING.as_secs(),
        NORMAL.as_millis(),
    );
    for t in timelines {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            t.system,
            ms(t.time_to_open),
            ms(t.fast_fail_p50),
            ms(t.fast_fail_p99),
            ms(t.failure_p99),
            ms(t.time_to_close),
            ms(t.time_to_recover),
            t.answers
        );
    }
}

impl Scenario for Breaker {
    fn name(&self) -> &'static str {
        "breaker"
    }

    fn title(&self) -> &'static str {
        "breaker: a dependency fails for 10 s, then heals"
    }

    fn server(&self, system: &str, _args: &ServerArgs) -> Result<App, String> {
        let backend = Backend::new();
        let routes = Router::new()
            .route("/flaky", get(Backend::flaky))
            .route("/work", get(Backend::work));
        let routes = match system {
            "unprotected" => routes,
            "palisade-breaker" => {
                let events = backend.clone();
                routes.route_layer(
                    CircuitBreakerLayer::per_route(
                        CircuitBreakerHandle::builder()
                            .name("bench")
                            .wait_in_open(OPEN_WAIT)
                            .on_state_change(move |change| events.on_state_change(change.to)),
                    )
                    .map_err(|e| e.to_string())?,
                )
            }
            other => return Err(format!("breaker has no system {other:?}")),
        };
        let admin = |failing: bool| {
            move |State(backend): State<Backend>| async move {
                let mut events = backend.events.lock().expect("events");
                let at = Some(Instant::now());
                if failing {
                    events.failed = at;
                } else {
                    events.healed = at;
                }
                backend.failing.store(failing, Ordering::Relaxed);
                "ok"
            }
        };
        let timeline = |State(backend): State<Backend>| async move {
            backend.events.lock().expect("events").json().to_string()
        };
        Ok(App::Axum(
            routes
                .route("/admin/fail", post(admin(true)))
                .route("/admin/heal", post(admin(false)))
                .route("/admin/timeline", get(timeline))
                .with_state(backend),
        ))
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            // Long enough after the heal for the breaker to probe (within one open wait) and for
            // the unprotected server to drain its queue.
            let after = if timing.duration > Timing::QUICK.duration {
                Duration::from_secs(9)
            } else {
                Duration::from_secs(4)
            };
            let duration = HEALTHY_BEFORE + FAILING + after;
            let mut rounds: Vec<Vec<(Vec<Row>, Timeline)>> = vec![Vec::new(); SYSTEMS.len()];
            for round in 0..timing.rounds {
                for (index, (id, name)) in SYSTEMS.into_iter().enumerate() {
                    let server = ServerProcess::start(self.name(), id, &ServerArgs::default())?;
                    let spec = LoadSpec {
                        target: server.addr,
                        mode: Mode::OpenLoop {
                            rate: 2.0 * RATE_PER_ROUTE,
                        },
                        connections: 256,
                        duration,
                        warmup: timing.warmup,
                        grace: timing.grace,
                        mix: vec![
                            RequestClass::get("flaky", "/flaky"),
                            RequestClass::get("work", "/work"),
                        ],
                    };
                    let start = Instant::now();
                    let measure_from = start + timing.warmup;
                    let fail_at = measure_from + HEALTHY_BEFORE;
                    let heal_at = fail_at + FAILING;
                    let end = measure_from + duration;
                    let (report, seen, server_times) = tokio::join!(
                        load::run(spec),
                        observe(server.addr, measure_from, end),
                        schedule(server.addr, fail_at, heal_at, end),
                    );
                    let report = report?;
                    let timeline = Timeline::from(name, &seen?, &server_times?, fail_at, heal_at);
                    let mut rows = Row::from_report(name, Some(2.0 * RATE_PER_ROUTE), &report);
                    let within_budget = report
                        .total()
                        .success
                        .count_between(0, u64::try_from(BUDGET.as_micros()).unwrap_or(u64::MAX));
                    let mut budget_row = rows[0].clone();
                    budget_row.class = format!("all ≤{}ms", BUDGET.as_millis());
                    budget_row.goodput_rps = within_budget as f64 / duration.as_secs_f64();
                    rows.push(budget_row);
                    eprintln!(
                        "round {} {name:<26} goodput {:>4.0}/s ({:>4.0}/s within {} ms)  open after {} ms  fast-fail p99 {} ms  closed after {} ms  recovered after {} ms",
                        round + 1,
                        rows[0].goodput_rps,
                        rows[rows.len() - 1].goodput_rps,
                        BUDGET.as_millis(),
                        ms(timeline.time_to_open),
                        ms(timeline.fast_fail_p99),
                        ms(timeline.time_to_close),
                        ms(timeline.time_to_recover),
                    );
                    rounds[index].push((rows, timeline));
                }
            }
            // Each system's median round by goodput within the budget.
            let within = |rows: &[Row]| rows[rows.len() - 1].goodput_rps;
            let picked: Vec<(Vec<Row>, Timeline)> = rounds
                .into_iter()
                .map(|mut runs| {
                    runs.sort_by(|a, b| within(&a.0).total_cmp(&within(&b.0)));
                    runs.swap_remove(runs.len() / 2)
                })
                .collect();
            print_timelines(picked.iter().map(|(_, t)| t));
            let mut rows: Vec<Row> = picked.into_iter().flat_map(|(rows, _)| rows).collect();
            let unprotected: Vec<(String, f64)> = rows
                .iter()
                .filter(|r| r.system == SYSTEMS[0].1)
                .map(|r| (r.class.clone(), r.goodput_rps))
                .collect();
            for row in &mut rows {
                row.ratio_to_baseline = unprotected
                    .iter()
                    .find(|(class, _)| *class == row.class)
                    .filter(|(_, goodput)| *goodput > 0.0)
                    .map(|(_, goodput)| row.goodput_rps / goodput);
            }
            Ok(rows)
        })
    }
}
