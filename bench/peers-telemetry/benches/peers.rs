//! palisade-telemetry against axum-tracing-opentelemetry, tower-otel and axum-prometheus, per
//! request, in one run. See `src/lib.rs` for the stacks.
//!
//! `cargo bench --manifest-path bench/peers-telemetry/Cargo.toml`

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_telemetry::TraceSampler;
use peers_telemetry::{Stack, drive, install_recorder, subscriber};

fn bench(c: &mut Criterion) {
    let metrics = install_recorder();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (_sampled_guard, sampled) = subscriber(TraceSampler::AlwaysOn);
    let (_unsampled_guard, unsampled) = subscriber(TraceSampler::AlwaysOff);

    for (group, dispatch, traceparent, tracing) in [
        ("tracing sampled", &sampled, false, true),
        (
            "tracing sampled, incoming traceparent",
            &sampled,
            true,
            true,
        ),
        ("tracing not sampled", &unsampled, false, true),
        ("metrics", &tracing::Dispatch::none(), false, false),
    ] {
        let mut g = c.benchmark_group(group);
        for stack in Stack::ALL {
            let wanted = stack == Stack::Bare
                || (tracing && stack.traces() && stack != Stack::PalisadeBoth)
                || (!tracing && matches!(stack, Stack::PalisadeMetrics | Stack::AxumPrometheus));
            if !wanted {
                continue;
            }
            let router = stack.router();
            g.bench_function(stack.name(), |b| {
                b.iter_custom(|iters| {
                    let _default = tracing::dispatcher::set_default(dispatch);
                    let elapsed = rt.block_on(drive(router.clone(), iters, traceparent));
                    metrics.handle().run_upkeep();
                    elapsed
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
