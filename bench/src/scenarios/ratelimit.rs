//! `ratelimit`: a flood of distinct client addresses against a per-IP rate limit, with a few
//! well-behaved clients sending within their limit. Compares Palisade's limiter with
//! `tower_governor` on the server's peak memory, the well-behaved clients' success ratio and how
//! fast refusals are answered.
//!
//! Client addresses vary without any real network address: the generator connects from
//! 127.0.0.1 only and writes a different `X-Forwarded-For` on every flood request (counting up
//! through 10.0.0.0/8), and both servers take the client from that header: Palisade because it
//! trusts 127.0.0.0/8 as its proxy, `tower_governor` because its `SmartIpKeyExtractor` reads the
//! header from any peer.

use std::{fmt::Write as _, time::Duration};

use axum::{Router, routing::get};
use http::{HeaderName, HeaderValue};
use palisade_rate_limit::{PolicyConfig, RateLimitLayer};
use serde::Serialize;
use tower_governor::{
    GovernorLayer, governor::GovernorConfigBuilder, key_extractor::SmartIpKeyExtractor,
};

use crate::{
    load::{self, DISTINCT_CLIENTS, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::{Row, out_dir},
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

/// `GET /hello` limited per client IP to 20 requests/s with bursts of 40 (Palisade keeps at most
/// 100 000 keys). The flood sends [`FLOOD_RPS`] requests/s, each from a new address (1 M before
/// one repeats); four well-behaved clients (192.0.2.1 to .4) send about 10 requests/s each, half
/// their limit, and one abusive client (198.51.100.7) about 200 requests/s, ten times its limit,
/// so that most of its requests are refused: their latency is the reported reject p99. All share
/// one open-loop schedule.
pub(super) struct RateLimitFlood;

const SYSTEMS: [(&str, &str); 2] = [
    ("palisade", "palisade-rate-limit"),
    ("tower_governor", "tower_governor"),
];

/// Requests per second of the whole schedule (flood and well-behaved clients).
const FLOOD_RPS: f64 = 20_000.0;
/// Well-behaved clients, each at about [`GOOD_RPS`].
const GOOD_CLIENTS: u32 = 4;
const GOOD_RPS: f64 = 10.0;
/// The abusive client's rate: ten times [`RATE`].
const ABUSER_RPS: f64 = 200.0;
/// The per-client quota of both systems.
const RATE: u32 = 20;
const BURST: u32 = 40;
/// Palisade's key cap (`tower_governor` has none).
const MAX_KEYS: usize = 100_000;

fn hello() -> Router {
    Router::new().route("/hello", get(|| async { "Hello, World!" }))
}

fn palisade() -> Result<Router, String> {
    let layer = RateLimitLayer::builder()
        .policy("per_ip", PolicyConfig::per_second(RATE).burst(BURST))
        .max_keys(MAX_KEYS)
        .trusted_proxies(["127.0.0.0/8"])
        .build()
        .map_err(|e| e.to_string())?;
    Ok(hello().layer(layer))
}

fn governor_router() -> Result<Router, String> {
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_secs(1) / RATE)
        .burst_size(BURST)
        .key_extractor(SmartIpKeyExtractor)
        .finish()
        .ok_or("tower_governor: invalid quota")?;
    // The cleanup its README shows: without it the key map only grows.
    let limiter = config.limiter().clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(60));
            limiter.retain_recent();
        }
    });
    Ok(hello().layer(GovernorLayer::new(config)))
}

/// One system's result under the names the scenario reports.
#[derive(Debug, Serialize)]
struct Summary {
    system: String,
    peak_rss_mib: Option<f64>,
    /// The well-behaved clients' 200s over the requests scheduled for them.
    good_client_ratio: f64,
    /// p99 of the 429s, from each request's intended send time.
    reject_p99_ms: Option<f64>,
    flood_requests: u64,
    flood_rejected: u64,
    abuser_requests: u64,
    abuser_rejected: u64,
    achieved_rps: f64,
}

fn mix() -> Vec<RequestClass> {
    // Weights give each well-behaved client GOOD_RPS of the whole schedule.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let flood_weight =
        ((FLOOD_RPS - f64::from(GOOD_CLIENTS) * GOOD_RPS - ABUSER_RPS) / GOOD_RPS) as u32;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let abuser_weight = (ABUSER_RPS / GOOD_RPS) as u32;
    let mut mix = vec![RequestClass {
        weight: flood_weight,
        clients: Some(DISTINCT_CLIENTS),
        ..RequestClass::get("flood", "/hello")
    }];
    for i in 1..=GOOD_CLIENTS {
        mix.push(RequestClass {
            headers: vec![(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::try_from(format!("192.0.2.{i}")).expect("an address"),
            )],
            ..RequestClass::get(&format!("good-{i}"), "/hello")
        });
    }
    mix.push(RequestClass {
        weight: abuser_weight,
        headers: vec![(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_static("198.51.100.7"),
        )],
        ..RequestClass::get("abuser", "/hello")
    });
    mix
}

impl Scenario for RateLimitFlood {
    fn name(&self) -> &'static str {
        "ratelimit"
    }

    fn title(&self) -> &'static str {
        "ratelimit: 1 M distinct client addresses, 4 well-behaved clients and an abuser, per-IP 20/s burst 40"
    }

    fn server(&self, system: &str, _args: &ServerArgs) -> Result<App, String> {
        match system {
            "palisade" => Ok(App::Axum(palisade()?)),
            "tower_governor" => Ok(App::Axum(governor_router()?)),
            other => Err(format!("ratelimit has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            // A full run sends each of the 1 M flood addresses once; a quick one the first
            // seconds' worth.
            let total = if timing.duration >= Timing::FULL.duration {
                Duration::from_secs_f64(f64::from(DISTINCT_CLIENTS) / FLOOD_RPS)
            } else {
                timing.warmup + timing.duration
            };
            let (warmup, duration) = (timing.warmup, total.saturating_sub(timing.warmup));
            let mut rows = Vec::new();
            let mut summaries = Vec::new();
            for (id, name) in SYSTEMS {
                let server = ServerProcess::start(self.name(), id, &ServerArgs::default())?;
                let report = load::run(LoadSpec {
                    target: server.addr,
                    mode: Mode::OpenLoop { rate: FLOOD_RPS },
                    connections: 256,
                    duration,
                    warmup,
                    grace: timing.grace,
                    mix: mix(),
                })
                .await?;
                #[allow(clippy::cast_precision_loss)]
                let peak = server.peak_rss().map(|b| b as f64 / f64::from(1 << 20));
                drop(server);
                let (mut good_ok, mut good_sent) = (0, 0);
                let (mut flood, mut abuser) = (None, None);
                for (class, stats) in &report.classes {
                    if class == "flood" {
                        flood = Some(stats);
                    } else if class == "abuser" {
                        abuser = Some(stats);
                    } else {
                        good_ok += stats.statuses.get(&200).copied().unwrap_or(0);
                        good_sent += stats.scheduled;
                    }
                }
                let total = report.total();
                #[allow(clippy::cast_precision_loss)]
                let summary = Summary {
                    system: id.to_owned(),
                    peak_rss_mib: peak,
                    good_client_ratio: good_ok as f64 / good_sent.max(1) as f64,
                    reject_p99_ms: (!total.rejected.is_empty())
                        .then(|| total.rejected.value_at_quantile(0.99) as f64 / 1000.0),
                    flood_requests: flood.map_or(0, |f| f.scheduled),
                    flood_rejected: flood.map_or(0, load::ClassStats::rejections),
                    abuser_requests: abuser.map_or(0, |a| a.scheduled),
                    abuser_rejected: abuser.map_or(0, load::ClassStats::rejections),
                    achieved_rps: report.achieved_rps(),
                };
                eprintln!(
                    "{name:<20} peak RSS {:>6.1} MiB good clients {:.4} reject p99 {:>7.2} ms ({:.0} rps)",
                    summary.peak_rss_mib.unwrap_or(f64::NAN),
                    summary.good_client_ratio,
                    summary.reject_p99_ms.unwrap_or(f64::NAN),
                    summary.achieved_rps,
                );
                let mut row = Row::from_report(name, Some(FLOOD_RPS), &report)
                    .into_iter()
                    .next()
                    .ok_or("no rows")?;
                row.server_peak_rss_mib = peak;
                row.ratio_to_baseline = Some(summary.good_client_ratio);
                rows.push(row);
                summaries.push(summary);
            }
            let mut table = String::from(
                "\nratelimit: ratio = good_client_ratio\n\n| system | peak_rss_mib | good_client_ratio | reject_p99_ms | flood requests | flood 429s | abuser requests | abuser 429s | achieved rps |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for s in &summaries {
                let _ = writeln!(
                    table,
                    "| {} | {:.1} | {:.4} | {} | {} | {} | {} | {} | {:.0} |",
                    s.system,
                    s.peak_rss_mib.unwrap_or(f64::NAN),
                    s.good_client_ratio,
                    s.reject_p99_ms.map_or("-".into(), |p| format!("{p:.2}")),
                    s.flood_requests,
                    s.flood_rejected,
                    s.abuser_requests,
                    s.abuser_rejected,
                    s.achieved_rps,
                );
            }
            println!("{table}");
            let path = out_dir().join("ratelimit-summary.json");
            let json = serde_json::to_string_pretty(&summaries).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(out_dir()).map_err(|e| e.to_string())?;
            std::fs::write(&path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(rows)
        })
    }
}
