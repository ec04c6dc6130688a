//! `ratelimit-redis`: three replica processes behind one real `redis-server`, one global limit,
//! each replica offered twice its share of it. Reports how close the admitted rate is to the
//! limit, Redis round trips per request (from Redis's own `INFO commandstats`), the latency the
//! shared check adds, and, with Redis killed, the latency of every request while it is down and
//! how long the shared limit takes to return once Redis is back.
//!
//! Phases, each a fresh Redis and fresh replicas:
//! - `local`: the in-memory limiter in each replica (the per-process limit becomes 3x the
//!   contract: the reason to share it);
//! - `redis`: the Redis backend, one `EVALSHA` per request;
//! - `redis + leases`: leases of [`LEASE`] requests for the hot key;
//! - `redis outage`: Redis killed before the measured window (the breaker opens during the
//!   warm-up), then restarted; the time until Redis runs the script again is the reopen time.
//!   Each replica fails open at a third of the limit (`local_share`), so the three still keep
//!   the global limit between them.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use palisade_rate_limit::{KeySource, PolicyConfig, RateLimitLayer, RedisConfig};
use palisade_testkit::redis::RedisServer;
use serde::Serialize;

use crate::{
    load::{self, LoadReport, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::{Row, out_dir},
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

pub(super) struct RateLimitRedis;

/// The global limit, requests per second, and its burst.
const LIMIT: u32 = 1500;
const BURST: u32 = 150;
const REPLICAS: usize = 3;
/// Each replica is offered twice its share of [`LIMIT`].
const OFFERED_PER_REPLICA: f64 = 2.0 * LIMIT as f64 / REPLICAS as f64;
/// The lease of the `redis + leases` phase.
const LEASE: u32 = 50;
const LEASE_TTL: Duration = Duration::from_millis(100);

const PHASES: [(&str, &str); 4] = [
    ("local", "local (per replica)"),
    ("redis", "redis"),
    ("leases", "redis + leases"),
    ("outage", "redis outage"),
];

fn router(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/hello", get(|| async { "Hello, World!" }))
        .layer(layer)
}

/// One phase's result under the names the scenario reports.
#[derive(Debug, Serialize)]
struct Summary {
    system: String,
    /// Admitted per second over the global limit.
    admitted_ratio: f64,
    /// Successful script calls in Redis per request sent (`None` without Redis).
    redis_calls_per_request: Option<f64>,
    /// p99 of every response (admitted and refused), from its intended send time.
    p99_ms: f64,
    /// The outage phase: p99 of every response while Redis was down, the breaker open.
    #[serde(skip_serializing_if = "Option::is_none")]
    outage_p99_ms: Option<f64>,
    /// The outage phase: from the restart to Redis running the script again.
    #[serde(skip_serializing_if = "Option::is_none")]
    reopen_s: Option<f64>,
    achieved_rps: f64,
    admitted_rps: f64,
}

fn p99_all(report: &LoadReport) -> f64 {
    let mut all = report.total().success;
    let _ = all.add(&report.total().rejected);
    #[allow(clippy::cast_precision_loss)]
    let p99 = all.value_at_quantile(0.99) as f64 / 1000.0;
    p99
}

/// Drives every replica at once, each at [`OFFERED_PER_REPLICA`].
async fn drive(
    replicas: &[ServerProcess],
    warmup: Duration,
    duration: Duration,
    grace: Duration,
) -> Result<LoadReport, String> {
    let loads = replicas.iter().map(|replica| {
        load::run(LoadSpec {
            target: replica.addr,
            mode: Mode::OpenLoop {
                rate: OFFERED_PER_REPLICA,
            },
            connections: 32,
            duration,
            warmup,
            grace,
            mix: vec![RequestClass::get("all", "/hello")],
        })
    });
    let reports = futures_util::future::join_all(loads).await;
    let mut merged: Option<LoadReport> = None;
    for report in reports {
        let report = report?;
        match &mut merged {
            None => merged = Some(report),
            Some(total) => {
                for ((_, into), (_, from)) in total.classes.iter_mut().zip(&report.classes) {
                    into.merge(from);
                }
                total.timed_out += report.timed_out;
            }
        }
    }
    merged.ok_or_else(|| "no replicas".into())
}

fn start_replicas(phase: &str, redis: Option<&RedisServer>) -> Result<Vec<ServerProcess>, String> {
    let mut args = ServerArgs::default();
    if let Some(redis) = redis {
        args = args.with("redis-url", &redis.url());
    }
    (0..REPLICAS)
        .map(|_| ServerProcess::start("ratelimit-redis", phase, &args))
        .collect()
}

fn evalsha(redis: &RedisServer) -> Result<u64, String> {
    redis
        .calls("evalsha")
        .map_err(|e| format!("redis INFO: {e}"))
}

async fn phase(id: &str, name: &str, timing: Timing) -> Result<(Summary, LoadReport), String> {
    let mut redis = RedisServer::start()
        .map_err(|e| format!("redis-server: {e} (install the Debian package redis-server)"))?;
    let shared = id != "local";
    let replicas = start_replicas(id, shared.then_some(&redis))?;
    let (warmup, duration, grace) = (timing.warmup, timing.duration, timing.grace);
    let mut outage_p99_ms = None;
    let mut reopen_s = None;
    let calls_before = evalsha(&redis)?;
    let report = if id == "outage" {
        // Shared first, so the replicas hold a live connection when Redis dies.
        drive(&replicas, Duration::ZERO, warmup, Duration::ZERO).await?;
        redis.kill();
        let down = drive(&replicas, warmup, duration, grace).await?;
        outage_p99_ms = Some(p99_all(&down));
        let restarted = Instant::now();
        redis.restart().map_err(|e| format!("restart redis: {e}"))?;
        let load = tokio::spawn({
            let addrs: Vec<_> = replicas.iter().map(|r| r.addr).collect();
            async move {
                let replicas: Vec<_> = addrs;
                let loads = replicas.into_iter().map(|target| {
                    load::run(LoadSpec {
                        target,
                        mode: Mode::OpenLoop {
                            rate: OFFERED_PER_REPLICA,
                        },
                        connections: 32,
                        duration: Duration::from_secs(5),
                        warmup: Duration::ZERO,
                        grace: Duration::ZERO,
                        mix: vec![RequestClass::get("all", "/hello")],
                    })
                });
                futures_util::future::join_all(loads).await
            }
        });
        while evalsha(&redis).unwrap_or(0) == 0 {
            if restarted.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if evalsha(&redis).unwrap_or(0) > 0 {
            reopen_s = Some(restarted.elapsed().as_secs_f64());
        }
        let _ = load.await;
        down
    } else {
        drive(&replicas, warmup, duration, grace).await?
    };
    drop(replicas);
    let total = report.total();
    let calls = evalsha(&redis).unwrap_or(calls_before) - calls_before;
    #[allow(clippy::cast_precision_loss)]
    let admitted_rps =
        total.statuses.get(&200).copied().unwrap_or(0) as f64 / duration.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let summary = Summary {
        system: name.to_owned(),
        admitted_ratio: admitted_rps / f64::from(LIMIT),
        // Over every request of the open-loop schedule, warm-up included, as Redis counts
        // them.
        redis_calls_per_request: (shared && id != "outage").then(|| {
            let sent = OFFERED_PER_REPLICA * REPLICAS as f64 * (warmup + duration).as_secs_f64();
            calls as f64 / sent
        }),
        p99_ms: p99_all(&report),
        outage_p99_ms,
        reopen_s,
        achieved_rps: report.achieved_rps(),
        admitted_rps,
    };
    Ok((summary, report))
}

impl Scenario for RateLimitRedis {
    fn name(&self) -> &'static str {
        "ratelimit-redis"
    }

    fn title(&self) -> &'static str {
        "ratelimit-redis: 3 replicas, one Redis, a global 1500/s offered 2x"
    }

    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        let policy = PolicyConfig::per_second(LIMIT)
            .burst(BURST)
            .key(KeySource::Global);
        let mut builder = RateLimitLayer::builder().policy("global", policy);
        if system != "local" {
            let url = args.text("redis-url").ok_or("--redis-url is required")?;
            let mut redis = RedisConfig::new(url);
            if system == "leases" {
                redis.lease_size = LEASE;
                redis.lease_ttl = LEASE_TTL;
            }
            // Failing open at a third each: three replicas keep the global limit between them.
            #[allow(clippy::cast_precision_loss)]
            let share = 1.0 / REPLICAS as f64;
            redis.local_share = share;
            builder = builder.redis(redis);
        }
        let layer = builder.build().map_err(|e| e.to_string())?;
        match system {
            "local" | "redis" | "leases" | "outage" => Ok(App::Axum(router(layer))),
            other => Err(format!("ratelimit-redis has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let mut rows = Vec::new();
            let mut summaries = Vec::new();
            for (id, name) in PHASES {
                let (summary, report) = phase(id, name, timing).await?;
                eprintln!(
                    "{name:<22} admitted {:.3} of the limit, {} Redis calls/request, p99 {:.2} ms{}",
                    summary.admitted_ratio,
                    summary
                        .redis_calls_per_request
                        .map_or("-".into(), |c| format!("{c:.3}")),
                    summary.p99_ms,
                    summary.outage_p99_ms.map_or(String::new(), |p| format!(
                        ", outage p99 {p:.2} ms, reopened in {:.2} s",
                        summary.reopen_s.unwrap_or(f64::NAN)
                    )),
                );
                let mut row = Row::from_report(name, Some(OFFERED_PER_REPLICA * 3.0), &report)
                    .into_iter()
                    .next()
                    .ok_or("no rows")?;
                row.ratio_to_baseline = Some(summary.admitted_ratio);
                rows.push(row);
                summaries.push(summary);
            }
            let mut table = format!(
                "\nratelimit-redis: ratio = admitted_ratio (admitted per second / the global limit of {LIMIT}/s; offered 2.0)\n\n| system | admitted_ratio | redis_calls_per_request | p99_ms | outage_p99_ms | reopen_s | achieved rps |\n|---|---:|---:|---:|---:|---:|---:|\n"
            );
            for s in &summaries {
                let opt = |v: Option<f64>, digits: usize| {
                    v.map_or("-".into(), |v| format!("{v:.digits$}"))
                };
                let _ = writeln!(
                    table,
                    "| {} | {:.3} | {} | {:.2} | {} | {} | {:.0} |",
                    s.system,
                    s.admitted_ratio,
                    opt(s.redis_calls_per_request, 3),
                    s.p99_ms,
                    opt(s.outage_p99_ms, 2),
                    opt(s.reopen_s, 2),
                    s.achieved_rps,
                );
            }
            println!("{table}");
            let path = out_dir().join("ratelimit-redis-summary.json");
            let json = serde_json::to_string_pretty(&summaries).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(out_dir()).map_err(|e| e.to_string())?;
            std::fs::write(&path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(rows)
        })
    }
}
