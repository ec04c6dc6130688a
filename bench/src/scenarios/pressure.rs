//! `pressure`: a memory-hungry route offered rising load, the production preset with and without
//! the memory monitor, against a 256 MiB memory budget: peak memory against the budget, whether
//! the server survived, and how critical and sheddable requests fared.
//!
//! Every request holds 8 MiB for 500 ms (`/report`), so memory in use is about the offered rate
//! times 4 MiB: 20, 40 and 80 requests a second ask for 80, 160 and 320 MiB. A fifth of the
//! requests are `critical`, the rest `sheddable` (`x-priority`). The budget is the monitor's
//! `max_rss`, the same measure on any machine (a container's own limit would end the unprotected
//! run in an OOM kill; here its RSS simply passes the budget). The monitored server samples every
//! 50 ms, so a burst cannot run far past a level between two samples.

use std::{fmt::Write as _, time::Duration};

use axum::{Router, extract::Query, routing::get};
use http::{HeaderName, HeaderValue};
use palisade::PalisadeConfig;
use serde::{Deserialize, Serialize};

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::{Row, out_dir},
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

pub(super) struct Pressure;

const SYSTEMS: [(&str, &str); 2] = [
    ("unprotected", "preset, no resource monitor"),
    ("monitored", "preset + memory monitor"),
];

/// The memory budget, in bytes.
const BUDGET: u64 = 256 << 20;
/// Offered load, requests per second, one step after another.
const STEPS: [f64; 3] = [20.0, 40.0, 80.0];
/// glibc's malloc raises its mmap threshold after freeing a large block, then serves blocks of
/// that size from its arenas and keeps them after `free`: a server's resident memory would stay
/// at its peak after the load, and a memory monitor would rightly keep shedding. A fixed
/// threshold gives large blocks back at `free`; jemalloc or mimalloc do the same with decay.
const ALLOCATOR: (&str, &str) = ("MALLOC_MMAP_THRESHOLD_", "131072");

/// What each request holds.
const REPORT: &str = "/report?mb=8&ms=500";

#[derive(Deserialize)]
struct ReportQuery {
    mb: usize,
    ms: u64,
}

fn app() -> Router {
    Router::new().route(
        "/report",
        get(|Query(q): Query<ReportQuery>| async move {
            let buffer = vec![1u8; q.mb.min(64) << 20];
            tokio::time::sleep(Duration::from_millis(q.ms.min(5_000))).await;
            buffer
                .iter()
                .step_by(4096)
                .map(|&b| u64::from(b))
                .sum::<u64>()
                .to_string()
        }),
    )
}

fn server(monitored: bool) -> Result<App, String> {
    let mut config = PalisadeConfig::load().map_err(|e| e.to_string())?;
    if monitored {
        config.overload.interval = Duration::from_millis(50);
        config.overload.memory.enabled = true;
        config.overload.memory.max_rss = Some(BUDGET);
    }
    let stack = palisade::Stack::builder()
        .config(config)
        .build()
        .map_err(|e| e.to_string())?;
    stack.health().mark_started();
    // This process serves until it is killed: the monitors run as long.
    if let Some(monitors) = stack.spawn_monitors() {
        std::mem::forget(monitors);
    }
    Ok(App::Palisade(stack.apply(app()), Box::new(stack.server())))
}

fn mix() -> Vec<RequestClass> {
    let class = |name: &str, weight: u32| RequestClass {
        weight,
        headers: vec![(
            HeaderName::from_static("x-priority"),
            HeaderValue::from_str(name).expect("a header value"),
        )],
        ..RequestClass::get(name, REPORT)
    };
    vec![class("critical", 1), class("sheddable", 4)]
}

/// One system's result under the names the scenario reports.
#[derive(Debug, Serialize)]
struct Summary {
    system: String,
    /// Peak resident memory over the budget.
    peak_memory_ratio: Option<f64>,
    /// Whether the server was gone after the load (killed by the kernel).
    oom_killed: bool,
    /// Critical requests answered 200 over those sent, all steps.
    critical_success_ratio: f64,
    /// Sheddable requests answered 200, and refused (503), all steps.
    sheddable_ok: u64,
    sheddable_shed: u64,
    /// After the load: every one of 10 sheddable requests, a second apart, answered 200 (the
    /// level is back to normal).
    recovered: bool,
}

/// Whether 10 sheddable requests a second apart, once the load is gone, are all answered 200:
/// the level is back to normal.
async fn recovered(target: std::net::SocketAddr) -> bool {
    let mut recovered = true;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let report = load::run(LoadSpec {
            target,
            mode: Mode::OpenLoop { rate: 1.0 },
            connections: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            grace: Duration::from_secs(1),
            mix: vec![RequestClass {
                headers: vec![(
                    HeaderName::from_static("x-priority"),
                    HeaderValue::from_static("sheddable"),
                )],
                ..RequestClass::get("probe", "/report?mb=1&ms=1")
            }],
        })
        .await;
        recovered &= report.is_ok_and(|r| {
            let statuses = r.total().statuses;
            statuses.get(&200).is_some_and(|&n| n > 0) && statuses.keys().all(|&s| s == 200)
        });
    }
    recovered
}

impl Scenario for Pressure {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn title(&self) -> &'static str {
        "pressure: 8 MiB held 500 ms per request at 20, 40, 80 rps, 256 MiB budget"
    }

    fn server(&self, system: &str, _args: &ServerArgs) -> Result<App, String> {
        match system {
            "unprotected" => server(false),
            "monitored" => server(true),
            other => Err(format!("pressure has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let mut rows = Vec::new();
            let mut summaries = Vec::new();
            for (id, name) in SYSTEMS {
                let server = ServerProcess::start_with_env(
                    self.name(),
                    id,
                    &ServerArgs::default(),
                    &[ALLOCATOR],
                )?;
                let (mut critical_ok, mut critical_sent) = (0, 0);
                let (mut sheddable_ok, mut sheddable_shed) = (0, 0);
                for rate in STEPS {
                    let report = load::run(LoadSpec {
                        target: server.addr,
                        mode: Mode::OpenLoop { rate },
                        connections: 128,
                        duration: timing.duration,
                        warmup: timing.warmup,
                        grace: timing.grace,
                        mix: mix(),
                    })
                    .await?;
                    for (class, stats) in &report.classes {
                        let ok = stats.statuses.get(&200).copied().unwrap_or(0);
                        if class == "critical" {
                            critical_ok += ok;
                            critical_sent += stats.scheduled;
                        } else {
                            sheddable_ok += ok;
                            sheddable_shed += stats.statuses.get(&503).copied().unwrap_or(0);
                        }
                    }
                    eprintln!(
                        "{name:<30} {rate:>4.0} rps: peak RSS {:>6.1} MiB",
                        server.peak_rss().unwrap_or(0) as f64 / f64::from(1 << 20)
                    );
                    rows.extend(Row::from_report(name, Some(rate), &report));
                }
                let peak = server.peak_rss();
                let oom_killed = peak.is_none();
                let recovered = !oom_killed && recovered(server.addr).await;
                drop(server);
                #[allow(clippy::cast_precision_loss)]
                summaries.push(Summary {
                    system: id.to_owned(),
                    peak_memory_ratio: peak.map(|p| p as f64 / BUDGET as f64),
                    oom_killed,
                    critical_success_ratio: critical_ok as f64 / critical_sent.max(1) as f64,
                    sheddable_ok,
                    sheddable_shed,
                    recovered,
                });
            }
            let mut table = String::from(
                "\npressure: 256 MiB budget\n\n| system | peak_memory_ratio | oom_killed | critical_success_ratio | sheddable ok | sheddable shed | recovered |\n|---|---:|---|---:|---:|---:|---|\n",
            );
            for s in &summaries {
                let _ = writeln!(
                    table,
                    "| {} | {} | {} | {:.4} | {} | {} | {} |",
                    s.system,
                    s.peak_memory_ratio
                        .map_or("-".into(), |r| format!("{r:.2}")),
                    s.oom_killed,
                    s.critical_success_ratio,
                    s.sheddable_ok,
                    s.sheddable_shed,
                    s.recovered,
                );
            }
            println!("{table}");
            let path = out_dir().join("pressure-summary.json");
            let json = serde_json::to_string_pretty(&summaries).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(out_dir()).map_err(|e| e.to_string())?;
            std::fs::write(&path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(rows)
        })
    }
}
