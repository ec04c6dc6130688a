//! `baseline`: peak throughput, closed loop, of bare axum, a hand-assembled peer stack and the
//! production preset, on hello world and the example's `/api/items`, bare and with the example's
//! recorder and subscriber installed.

use std::path::PathBuf;

use tower::layer::util::Identity;

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::Row,
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
    servers::{
        Work, hello_and_work, hello_with_preset_headers, install_production_telemetry,
        palisade_preset, palisade_preset_with_access_log, palisade_stack,
    },
};

/// Every system on every path in both configurations, alternating systems round by round and
/// keeping each cell's median round. Throughput is reported as a ratio to bare axum and to the
/// peer stack of the same configuration and path.
pub(super) struct Baseline;

/// How a system is started.
#[derive(Clone, Copy)]
enum Launch {
    /// `bench-server baseline <id>`.
    Bench(&'static str),
    /// `peer-stack-server <span> <configuration>` from `bench/peers-telemetry`.
    PeerStack(&'static str),
}

/// The systems in every cell.
const SYSTEMS: [(Launch, &str); 4] = [
    (Launch::Bench("bare-axum"), BARE_AXUM),
    (Launch::PeerStack("trace"), PEER_STACK),
    (
        Launch::PeerStack("otel"),
        "peer stack (axum-tracing-opentelemetry)",
    ),
    (Launch::Bench("palisade-preset"), PRESET),
];

const BARE_AXUM: &str = "bare axum";
const PEER_STACK: &str = "peer stack";
const PRESET: &str = "palisade preset + serve";

/// The floor under the preset, measured where it is defined (bare, hello world): bare axum whose
/// handler sends the preset's response headers.
const FLOOR: (Launch, &str) = (
    Launch::Bench("bare-axum-headers"),
    "bare axum + the preset's headers",
);

const CONFIGURATIONS: [&str; 2] = ["bare", "production"];
const PATHS: [&str; 2] = ["/hello", "/api/items"];

/// Where `peer-stack-server` is: `PALISADE_BENCH_PEER_STACK` (set by `cargo xtask bench`), else
/// where `cargo xtask bench` builds it (`<target>/peers/release/`).
fn peer_stack_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PALISADE_BENCH_PEER_STACK") {
        return Ok(path.into());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me
        .parent()
        .and_then(|release| release.parent())
        .map(|target| target.join("peers/release/peer-stack-server"))
        .ok_or("no target directory")?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build --release --manifest-path \
             bench/peers-telemetry/Cargo.toml --target-dir target/peers --bin peer-stack-server` \
             (`cargo xtask bench baseline` does)",
            path.display()
        ))
    }
}

fn start(launch: Launch, configuration: &str) -> Result<ServerProcess, String> {
    match launch {
        Launch::Bench(id) => ServerProcess::start(
            "baseline",
            id,
            &ServerArgs::default().with("configuration", &configuration),
        ),
        Launch::PeerStack(span) => ServerProcess::start_program(
            &peer_stack_binary()?,
            &[span.to_owned(), configuration.to_owned()],
            &[],
        ),
    }
}

impl Scenario for Baseline {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn title(&self) -> &'static str {
        "baseline: bare axum, peer stack, preset; hello and /api/items; bare and production"
    }

    /// Also serves, for instruction counts by hand: `bare-hyper`, `palisade-serve` (bare axum's
    /// router under `palisade::serve`, no layer), `palisade-serve-layered` (the same plus an empty
    /// `Router::layer`: what axum's per-route boxing of any layered stack costs), `palisade-stack`
    /// (axum + request id, security headers and the in-flight limit) and
    /// `palisade-preset-access-log`.
    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        let work = Work::from_args(args)?;
        let max = u32::try_from(args.number("max-in-flight", 1000)?).map_err(|e| e.to_string())?;
        match args.text("configuration").unwrap_or("bare") {
            "bare" => {}
            "production" => install_production_telemetry()?,
            other => return Err(format!("--configuration {other:?}: bare or production")),
        }
        match system {
            "bare-hyper" => Ok(App::BareHyper(work)),
            "bare-axum" => Ok(App::Axum(hello_and_work(work))),
            "bare-axum-headers" => Ok(App::Axum(hello_with_preset_headers(work)?)),
            "palisade-stack" => Ok(App::Axum(palisade_stack(hello_and_work(work), max)?)),
            "palisade-preset" => palisade_preset(hello_and_work(work)),
            "palisade-serve" => Ok(App::Palisade(
                hello_and_work(work),
                Box::new(palisade::Server::new(palisade::ServerConfig::default())),
            )),
            "palisade-serve-layered" => Ok(App::Palisade(
                hello_and_work(work).layer(Identity::new()),
                Box::new(palisade::Server::new(palisade::ServerConfig::default())),
            )),
            "palisade-preset-access-log" => palisade_preset_with_access_log(hello_and_work(work)),
            other => Err(format!("baseline has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let mut cells: Vec<(Launch, &str, &str, &str)> = Vec::new();
            for configuration in CONFIGURATIONS {
                for path in PATHS {
                    if (configuration, path) == ("bare", "/hello") {
                        cells.push((FLOOR.0, FLOOR.1, configuration, path));
                    }
                    for (launch, name) in SYSTEMS {
                        cells.push((launch, name, configuration, path));
                    }
                }
            }
            let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); cells.len()];
            for round in 0..timing.rounds {
                for (index, &(launch, name, configuration, path)) in cells.iter().enumerate() {
                    let server = start(launch, configuration)?;
                    let spec = LoadSpec {
                        target: server.addr,
                        mode: Mode::ClosedLoop,
                        connections: 64,
                        duration: timing.duration,
                        warmup: timing.warmup,
                        grace: timing.grace,
                        mix: vec![RequestClass::get("all", path)],
                    };
                    let report = load::run(spec).await?;
                    let mut row = Row::from_report(name, None, &report).remove(0);
                    row.configuration = Some(configuration.to_owned());
                    row.path = Some(path.to_owned());
                    eprintln!(
                        "round {} {configuration:<10} {path:<10} {name:<40} {:>9.0} rps  p99 {:.2} ms",
                        round + 1,
                        row.achieved_rps,
                        row.p99_ms
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
            let find = |rows: &[Row], system: &str, configuration: &str, path: &str| {
                rows.iter()
                    .find(|r| {
                        r.system == system
                            && r.configuration.as_deref() == Some(configuration)
                            && r.path.as_deref() == Some(path)
                    })
                    .cloned()
            };
            let reference = rows.clone();
            for row in &mut rows {
                let (Some(configuration), Some(path)) =
                    (row.configuration.clone(), row.path.clone())
                else {
                    continue;
                };
                let ratio = |system| {
                    find(&reference, system, &configuration, &path)
                        .map(|other| row.achieved_rps / other.achieved_rps)
                };
                row.ratio_to_baseline = ratio(BARE_AXUM);
                row.ratio_to_peer_stack = ratio(PEER_STACK);
            }
            for configuration in CONFIGURATIONS {
                for path in PATHS {
                    if let (Some(preset), Some(peer), Some(axum)) = (
                        find(&rows, PRESET, configuration, path),
                        find(&rows, PEER_STACK, configuration, path),
                        find(&rows, BARE_AXUM, configuration, path),
                    ) {
                        eprintln!(
                            "{configuration:<10} {path:<10} preset vs peer stack: throughput {:.2}x, p99 {:.2}x; vs bare axum: {:.2}x",
                            preset.achieved_rps / peer.achieved_rps,
                            preset.p99_ms / peer.p99_ms,
                            preset.achieved_rps / axum.achieved_rps,
                        );
                    }
                }
            }
            Ok(rows)
        })
    }
}
