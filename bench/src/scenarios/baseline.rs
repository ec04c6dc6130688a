//! `baseline`: peak throughput of a hello-world route, closed loop.

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::Row,
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
    servers::{
        Work, hello_and_work, hello_with_preset_headers, palisade_preset,
        palisade_preset_with_access_log, palisade_stack,
    },
};

/// Bare hyper, bare axum, bare axum sending the preset's response headers from its handler (the
/// floor under the preset), axum + three Palisade layers, and the whole production preset served
/// by `palisade::serve`, with and without its access log, alternating systems round by round and keeping each system's median
/// round. Throughput is reported as a ratio to bare axum.
pub(super) struct Baseline;

const SYSTEMS: [(&str, &str); 6] = [
    ("bare-hyper", "bare hyper"),
    ("bare-axum", "bare axum"),
    ("bare-axum-headers", "bare axum + the preset's headers"),
    ("palisade-stack", "axum + id, headers, limit"),
    ("palisade-preset", "palisade preset + serve"),
    (
        "palisade-preset-access-log",
        "palisade preset + serve + access log",
    ),
];

impl Scenario for Baseline {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn title(&self) -> &'static str {
        "baseline: hello world, closed loop"
    }

    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        let work = Work::from_args(args)?;
        let max = u32::try_from(args.number("max-in-flight", 1000)?).map_err(|e| e.to_string())?;
        match system {
            "bare-hyper" => Ok(App::BareHyper(work)),
            "bare-axum" => Ok(App::Axum(hello_and_work(work))),
            "bare-axum-headers" => Ok(App::Axum(hello_with_preset_headers(work)?)),
            "palisade-stack" => Ok(App::Axum(palisade_stack(hello_and_work(work), max)?)),
            "palisade-preset" => palisade_preset(hello_and_work(work)),
            "palisade-preset-access-log" => palisade_preset_with_access_log(hello_and_work(work)),
            other => Err(format!("baseline has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); SYSTEMS.len()];
            for round in 0..timing.rounds {
                for (index, (id, name)) in SYSTEMS.into_iter().enumerate() {
                    let server = ServerProcess::start(self.name(), id, &ServerArgs::default())?;
                    let spec = LoadSpec {
                        target: server.addr,
                        mode: Mode::ClosedLoop,
                        connections: 64,
                        duration: timing.duration,
                        warmup: timing.warmup,
                        grace: timing.grace,
                        mix: vec![RequestClass::get("all", "/hello")],
                    };
                    let report = load::run(spec).await?;
                    let row = Row::from_report(name, None, &report).remove(0);
                    eprintln!(
                        "round {} {name:<28} {:>9.0} rps",
                        round + 1,
                        row.achieved_rps
                    );
                    rounds[index].push(row);
                }
            }
            let mut rows: Vec<Row> = rounds
                .into_iter()
                .map(|mut runs| {
                    runs.sort_by(|a, b| a.achieved_rps.total_cmp(&b.achieved_rps));
                    runs.swap_remove(runs.len() / 2)
                })
                .collect();
            let axum = rows.iter().find(|r| r.system == "bare axum").cloned();
            for row in &mut rows {
                row.ratio_to_baseline = axum.as_ref().map(|a| row.achieved_rps / a.achieved_rps);
            }
            if let (Some(axum), Some(preset)) = (
                axum,
                rows.iter().find(|r| r.system == "palisade preset + serve"),
            ) {
                eprintln!(
                    "preset vs bare axum (medians): throughput {:.1}%, p99 {:.2}x",
                    100.0 * preset.achieved_rps / axum.achieved_rps,
                    preset.p99_ms / axum.p99_ms
                );
            }
            Ok(rows)
        })
    }
}
