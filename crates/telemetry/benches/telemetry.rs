//! Added cost per request of `TelemetryLayer` against the bare service, in one run: off, tracing
//! with no interested subscriber, metrics only, tracing sampled and not sampled, and both.
//! Each request is `ready` + `call` + dropping the response (which ends the body: the span ends
//! and the duration is recorded then).
//!
//! `cargo bench -p palisade-telemetry --bench telemetry`
//!
//! Spans go through the real pipeline (`TracingConfig::build_with_exporter`: sampler, bounded
//! batch queue, counters) into an exporter that discards them, on the SDK's export thread.
//! Metrics go to a Prometheus recorder (installed globally, as in production). The comparison
//! with peer crates (axum-tracing-opentelemetry, tower-otel, axum-prometheus) is a separate
//! package: `cargo bench --manifest-path bench/peers-telemetry/Cargo.toml`.

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};
use palisade_telemetry::{
    PrometheusConfig, TelemetryLayer, TraceSampler, TracingConfig, TracingGuard,
};
use palisade_testkit::bench::{Inner, contended, drive, inner};
use tower::Layer;
use tracing::Dispatch;
use tracing_subscriber::{Registry, layer::SubscriberExt};

/// Discards spans: the cost measured is the request path, not an exporter.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

fn pipeline(sampler: TraceSampler) -> (TracingGuard, Dispatch) {
    let guard = TracingConfig {
        sampler,
        max_queue_size: 65_536,
        log_to_stdout: false,
        ..TracingConfig::default()
    }
    .build_with_exporter(Discard)
    .expect("valid pipeline");
    let dispatch = Dispatch::new(Registry::default().with(guard.layer()));
    (guard, dispatch)
}

fn layer(tracing: bool, metrics: bool) -> palisade_telemetry::Telemetry<Inner> {
    TelemetryLayer::builder()
        .tracing(tracing)
        .metrics(metrics)
        .build()
        .expect("valid layer")
        .layer(inner())
}

fn bench(c: &mut Criterion) {
    let (recorder, prometheus) = PrometheusConfig::default()
        .build_recorder()
        .expect("valid recorder");
    metrics::set_global_recorder(recorder).expect("the only recorder of this process");
    let (sampled_guard, sampled) = pipeline(TraceSampler::AlwaysOn);
    let (unsampled_guard, unsampled) = pipeline(TraceSampler::AlwaysOff);
    // A subscriber that wants no span, registered like a real one: `Dispatch::none()` is not
    // registered, so the interest the other (OTel) dispatchers register would let spans through.
    let none = Dispatch::new(tracing::subscriber::NoSubscriber::default());

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("per request");
    let cases: [(&str, bool, bool, &Dispatch); 7] = [
        ("bare service", false, false, &none),
        ("telemetry off", false, false, &none),
        ("tracing on, no subscriber", true, false, &none),
        ("metrics only", false, true, &none),
        ("tracing sampled", true, false, &sampled),
        ("tracing not sampled", true, false, &unsampled),
        ("tracing sampled + metrics", true, true, &sampled),
    ];
    for (name, tracing, metrics, dispatch) in cases {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let _default = tracing::dispatcher::set_default(dispatch);
                let elapsed = if name == "bare service" {
                    rt.block_on(drive(inner(), iters))
                } else {
                    rt.block_on(drive(layer(tracing, metrics), iters))
                };
                // Fold histogram samples into buckets, as the upkeep thread does.
                prometheus.handle().run_upkeep();
                elapsed
            });
        });
    }
    group.finish();

    // Two threads sharing one layer: the metric handle cache and the recorder under contention.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("two threads");
    let (bare, metrics_only) = (inner(), layer(false, true));
    group.bench_function("bare service", |b| {
        b.iter_custom(|n| contended(&multi, &bare, n));
    });
    group.bench_function("metrics only", |b| {
        b.iter_custom(|n| {
            let elapsed = contended(&multi, &metrics_only, n);
            prometheus.handle().run_upkeep();
            elapsed
        });
    });
    group.finish();

    let exported = sampled_guard.stats();
    assert_eq!(
        exported.dropped_queue_full, 0,
        "the queue kept up: {exported:?}"
    );
    drop(unsampled_guard);
    drop(sampled_guard);
}

criterion_group!(benches, bench);
criterion_main!(benches);
