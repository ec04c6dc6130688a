//! Added cost per request of the in-flight limiter against tower's `ConcurrencyLimit`, measured in
//! the same run: uncontended (one task) and contended (two tasks on two worker threads sharing one
//! limiter). Each request is `ready` + `call` + dropping the response (which releases our permit;
//! tower releases when the future completes).
//!
//! `cargo bench -p palisade-concurrency-limit-hysteresis --bench limiter`

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, Watermark};
use palisade_core::OverloadState;
use palisade_testkit::bench::{Inner, contended, drive, inner};
use tower::Layer;

const LIMIT: u32 = 1_000_000;

fn palisade() -> palisade_concurrency_limit_hysteresis::ConcurrencyLimit<Inner> {
    ConcurrencyLimitLayer::builder()
        .max_in_flight(LIMIT)
        .high_water(Watermark::fraction(0.8))
        .low_water(Watermark::fraction(0.6))
        .overload_state(OverloadState::new())
        .build()
        .expect("valid limiter")
        .layer(inner())
}

fn tower_limit() -> tower::limit::ConcurrencyLimit<Inner> {
    tower::limit::ConcurrencyLimitLayer::new(LIMIT as usize).layer(inner())
}

fn bench(c: &mut Criterion) {
    let single = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("uncontended");
    group.bench_function("bare service", |b| {
        b.to_async(&single).iter_custom(|n| drive(inner(), n));
    });
    group.bench_function("palisade ConcurrencyLimit", |b| {
        b.to_async(&single).iter_custom(|n| drive(palisade(), n));
    });
    group.bench_function("tower ConcurrencyLimit", |b| {
        b.to_async(&single).iter_custom(|n| drive(tower_limit(), n));
    });
    group.finish();

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("two threads");
    let (bare, ours, theirs) = (inner(), palisade(), tower_limit());
    group.bench_function("bare service", |b| {
        b.iter_custom(|n| contended(&multi, &bare, n));
    });
    group.bench_function("palisade ConcurrencyLimit", |b| {
        b.iter_custom(|n| contended(&multi, &ours, n));
    });
    group.bench_function("tower ConcurrencyLimit", |b| {
        b.iter_custom(|n| contended(&multi, &theirs, n));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
