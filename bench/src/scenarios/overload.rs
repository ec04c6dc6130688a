//! `overload`: a route with bounded capacity under 0.5x to 4x of its measured capacity, open loop.

use palisade::core::OverloadState;

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::Row,
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
    servers::{Work, hello_and_work, palisade_limiter, tower_limit},
};

/// Bare axum (queues without bound), tower's `ConcurrencyLimit` + `LoadShed`, and Palisade's
/// in-flight limiter, on `/work` (8 workers x 10 ms); goodput reported as a ratio to capacity.
pub(super) struct Overload;

const SYSTEMS: [(&str, &str); 3] = [
    ("bare-axum", "bare axum"),
    ("tower", "tower ConcurrencyLimit+LoadShed"),
    ("palisade-limiter", "palisade limiter"),
];

/// The limit both limiters get: 1.5x the worker pool.
const MAX_IN_FLIGHT: u32 = 12;

impl Scenario for Overload {
    fn name(&self) -> &'static str {
        "overload"
    }

    fn title(&self) -> &'static str {
        "overload: bounded-capacity route, open loop"
    }

    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        let router = hello_and_work(Work::from_args(args)?);
        match system {
            "bare-axum" => Ok(App::Axum(router)),
            "tower" => Ok(App::Axum(tower_limit(router, MAX_IN_FLIGHT as usize))),
            "palisade-limiter" => Ok(App::Axum(
                router.layer(palisade_limiter(MAX_IN_FLIGHT, &OverloadState::new())?),
            )),
            other => Err(format!("overload has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let spec = |target, mode, connections| LoadSpec {
                target,
                mode,
                connections,
                duration: timing.duration,
                warmup: timing.warmup,
                grace: timing.grace,
                mix: vec![RequestClass::get("all", "/work")],
            };
            let args = ServerArgs::default();
            let capacity = {
                let server = ServerProcess::start(self.name(), "bare-axum", &args)?;
                load::run(spec(server.addr, Mode::ClosedLoop, 32))
                    .await?
                    .goodput_rps()
            };
            eprintln!("measured capacity of /work: {capacity:.0} responses/s");
            let mut rows = Vec::new();
            for (id, name) in SYSTEMS {
                for factor in [0.5, 1.0, 2.0, 4.0] {
                    // A fresh server per point: what one point left queued must not weigh on the next.
                    let server = ServerProcess::start(self.name(), id, &args)?;
                    let rate = capacity * factor;
                    let report = load::run(spec(server.addr, Mode::OpenLoop { rate }, 256)).await?;
                    let mut row = Row::from_report(name, Some(rate), &report).remove(0);
                    row.ratio_to_baseline = Some(row.goodput_rps / capacity);
                    eprintln!(
                        "{name:<32} {factor}x: goodput {:>6.0}/s p99 {:>8.2} ms rejected {}",
                        row.goodput_rps, row.p99_ms, row.rejected
                    );
                    rows.push(row);
                }
            }
            Ok(rows)
        })
    }
}
