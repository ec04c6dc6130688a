//! `bulkhead`: noisy neighbour. Offered overload on one route group, steady load on another, both
//! sharing one bounded worker pool; the steady group's latency with and without bulkheads.

use std::time::Duration;

use axum::{Router, extract::State, routing::get};
use palisade_bulkhead::BulkheadLayer;

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::Row,
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
    servers::Work,
};

/// `/noisy/work` and `/steady/work` share one worker pool (8 workers x 10 ms). 95% of the offered
/// load goes to `/noisy`, 5% to `/steady`, at 0.5x and 3x of the pool's measured capacity. Bare
/// axum lets the noisy group fill the pool's queue; with Palisade bulkheads the noisy group gets 6
/// slots (queue 6, wait 50 ms) and the steady group 4 of its own, so its requests always find a
/// worker.
pub(super) struct NoisyNeighbour;

const SYSTEMS: [(&str, &str); 2] = [
    ("bare-axum", "bare axum"),
    ("palisade-bulkhead", "palisade bulkheads"),
];

fn router(work: &Work, noisy: Option<BulkheadLayer>, steady: Option<BulkheadLayer>) -> Router {
    let group = |layer: Option<BulkheadLayer>| {
        let router = Router::new()
            .route(
                "/work",
                get(|State(work): State<Work>| async move { work.run().await }),
            )
            .with_state(work.clone());
        match layer {
            Some(layer) => router.route_layer(layer),
            None => router,
        }
    };
    Router::new()
        .nest("/noisy", group(noisy))
        .nest("/steady", group(steady))
}

fn bulkhead(name: &'static str, slots: u32, queued: u32) -> Result<BulkheadLayer, String> {
    BulkheadLayer::builder()
        .name(name)
        .max_concurrent(slots)
        .max_queued(queued)
        .max_wait(Duration::from_millis(50))
        .build()
        .map_err(|e| e.to_string())
}

impl Scenario for NoisyNeighbour {
    fn name(&self) -> &'static str {
        "bulkhead"
    }

    fn title(&self) -> &'static str {
        "bulkhead: noisy neighbour, 95% /noisy + 5% /steady on one worker pool, open loop"
    }

    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        let work = Work::from_args(args)?;
        match system {
            "bare-axum" => Ok(App::Axum(router(&work, None, None))),
            "palisade-bulkhead" => Ok(App::Axum(router(
                &work,
                Some(bulkhead("noisy", 6, 6)?),
                Some(bulkhead("steady", 4, 4)?),
            ))),
            other => Err(format!("bulkhead has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let spec = |target, mode, mix| LoadSpec {
                target,
                mode,
                connections: 256,
                duration: timing.duration,
                warmup: timing.warmup,
                grace: timing.grace,
                mix,
            };
            let args = ServerArgs::default();
            let capacity = {
                let server = ServerProcess::start(self.name(), "bare-axum", &args)?;
                let mut closed = spec(
                    server.addr,
                    Mode::ClosedLoop,
                    vec![RequestClass::get("all", "/steady/work")],
                );
                closed.connections = 32;
                load::run(closed).await?.goodput_rps()
            };
            eprintln!("measured capacity of the worker pool: {capacity:.0} responses/s");
            let mix = vec![
                RequestClass {
                    weight: 19,
                    ..RequestClass::get("noisy", "/noisy/work")
                },
                RequestClass::get("steady", "/steady/work"),
            ];
            let mut rows = Vec::new();
            for (id, name) in SYSTEMS {
                for factor in [0.5, 3.0] {
                    let server = ServerProcess::start(self.name(), id, &args)?;
                    let rate = capacity * factor;
                    let report =
                        load::run(spec(server.addr, Mode::OpenLoop { rate }, mix.clone())).await?;
                    let mut system_rows =
                        Row::from_report(&format!("{name} @{factor}x"), Some(rate), &report);
                    for row in &mut system_rows {
                        row.ratio_to_baseline = Some(row.goodput_rps / capacity);
                    }
                    for row in &system_rows {
                        eprintln!(
                            "{name:<20} {factor}x {:<7} goodput {:>6.0}/s p99 {:>8.2} ms rejected {}",
                            row.class, row.goodput_rps, row.p99_ms, row.rejected
                        );
                    }
                    rows.extend(system_rows);
                }
            }
            Ok(rows)
        })
    }
}
