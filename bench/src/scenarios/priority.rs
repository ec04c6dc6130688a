//! `priority`: 3x overload of a bounded route with a mix of classes, open loop.

use http::{HeaderName, HeaderValue};
use palisade::{core::OverloadState, loadshed::LoadShedLayer};

use crate::{
    load::{self, LoadSpec, Mode, RequestClass},
    process::ServerProcess,
    report::Row,
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
    servers::{Work, hello_and_work, palisade_limiter_with, tower_limit},
};

/// 10% `critical`, 30% `sheddable_plus`, 60% `sheddable` (by the `x-priority` header) on `/work`
/// (8 workers x 10 ms), at 0.5x (the unloaded reference) and 3x of measured capacity: bare axum,
/// tower `ConcurrencyLimit` + `LoadShed`, and Palisade (priority shedder in front of the
/// in-flight limiter). Per-class goodput and latency.
pub(super) struct PriorityMix;

const SYSTEMS: [(&str, &str); 3] = [
    ("bare-axum", "bare axum"),
    ("tower", "tower ConcurrencyLimit+LoadShed"),
    ("palisade", "palisade shedder+limiter"),
];

/// The limiter's maximum, and the shedder's band in percent of it, from 0.3 x 24 (about 7 in
/// flight, just under the 8 workers) to 0.7 (about 17). Under a steady overload the level settles
/// where the shedding of `sheddable_plus` balances the load (its part: 10.4 to 13.6 here), and
/// admitted requests wait behind that queue, so that part must stay under two batches of the 8
/// workers (16 in flight) for the critical p99 to stay within 2x of unloaded. The top of the band
/// sits below the limiter's high-water mark (0.8), so the limiter refuses only `critical_plus`
/// requests past it. The in-flight count is a sawtooth (the 8 workers finish together on the
/// timer tick, then admissions refill the queue) whose peaks reach `critical`'s part for a few
/// milliseconds; the shedder's `critical_sustain` (default 100 ms) keeps them from shedding
/// `critical`. (Before `critical_sustain`, those peaks forced a band reaching up to 0.8; with it,
/// 0.4 to 0.8 kept every critical request but its p99 at 2.07x.)
const MAX_IN_FLIGHT: u32 = 24;
/// The shedder's band, in percent of the limiter's maximum.
const THRESHOLD_PERCENT: u64 = 30;
const CEILING_PERCENT: u64 = 70;
/// The limiter's low-water mark, in percent of its maximum.
const LIMITER_LOW_PERCENT: u64 = 60;

fn class(name: &str, weight: u32) -> RequestClass {
    RequestClass {
        weight,
        headers: vec![(
            HeaderName::from_static("x-priority"),
            HeaderValue::from_str(name).expect("class name"),
        )],
        ..RequestClass::get(name, "/work")
    }
}

impl Scenario for PriorityMix {
    fn name(&self) -> &'static str {
        "priority"
    }

    fn title(&self) -> &'static str {
        "priority: 10% critical, 30% sheddable_plus, 60% sheddable, open loop"
    }

    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        let router = hello_and_work(Work::from_args(args)?);
        match system {
            "bare-axum" => Ok(App::Axum(router)),
            "tower" => Ok(App::Axum(tower_limit(
                router,
                (MAX_IN_FLIGHT * 4 / 5) as usize,
            ))),
            "palisade" => {
                // One overload state per server: the limiter publishes, the shedder reads.
                let overload = OverloadState::new();
                let max = u32::try_from(args.number("max-in-flight", u64::from(MAX_IN_FLIGHT))?)
                    .map_err(|e| e.to_string())?;
                let percent = |key, default| args.number(key, default).map(|v| v as f64 / 100.0);
                let low = percent("limiter-low-percent", LIMITER_LOW_PERCENT)?;
                let limiter = palisade_limiter_with(max, low, &overload)?;
                let shedder = LoadShedLayer::builder()
                    .overload_state(overload)
                    .band(
                        percent("threshold-percent", THRESHOLD_PERCENT)?,
                        percent("ceiling-percent", CEILING_PERCENT)?,
                    )
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(App::Axum(router.layer(limiter).layer(shedder)))
            }
            other => Err(format!("priority has no system {other:?}")),
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
            // `PALISADE_BENCH_SERVER_ARGS="--threshold-percent 40 --ceiling-percent 75"` tunes the
            // Palisade server for experiments.
            let extra = std::env::var("PALISADE_BENCH_SERVER_ARGS").unwrap_or_default();
            let args = ServerArgs::parse(extra.split_whitespace().map(str::to_owned))?;
            let capacity = {
                let server = ServerProcess::start(self.name(), "bare-axum", &args)?;
                let mut closed = spec(
                    server.addr,
                    Mode::ClosedLoop,
                    vec![RequestClass::get("all", "/work")],
                );
                closed.connections = 32;
                load::run(closed).await?.goodput_rps()
            };
            eprintln!("measured capacity of /work: {capacity:.0} responses/s");
            let mix = vec![
                class("critical", 1),
                class("sheddable_plus", 3),
                class("sheddable", 6),
            ];
            let mut rows = Vec::new();
            let only = std::env::var("PALISADE_BENCH_SYSTEMS").ok();
            for (id, name) in SYSTEMS.into_iter().filter(|(id, _)| {
                only.as_deref()
                    .is_none_or(|o| o.split(',').any(|x| x == *id))
            }) {
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
                            "{name:<28} {factor}x {:<15} goodput {:>6.0}/s p99 {:>8.2} ms rejected {}",
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
