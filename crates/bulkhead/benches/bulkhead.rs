//! Added cost per request of a bulkhead (acquire + release of a slot) against tower's
//! `ConcurrencyLimit` and tower-resilience's bulkhead (0.13, which boxes its future and releases
//! when the future completes), measured in the same run: uncontended (one task) and contended (two tasks on two worker threads sharing one
//! limiter). Each request is `ready` + `call` + dropping the response (which releases our permit;
//! tower releases when the future completes).
//!
//! `cargo bench -p palisade-bulkhead --bench bulkhead`

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_bulkhead::BulkheadLayer;
use palisade_testkit::bench::{Inner, contended, drive, inner};
use tower::Layer;

const LIMIT: u32 = 1_000_000;

fn palisade() -> palisade_bulkhead::Bulkhead<Inner> {
    BulkheadLayer::builder()
        .name("bench")
        .max_concurrent(LIMIT)
        .build()
        .expect("valid bulkhead")
        .layer(inner())
}

fn resilience() -> tower_resilience_bulkhead::Bulkhead<Inner> {
    tower_resilience_bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(LIMIT as usize)
        .reject_when_full()
        .build()
        .expect("valid tower-resilience bulkhead")
        .layer(inner())
}

fn tower_limit() -> tower::limit::ConcurrencyLimit<Inner> {
    tower::limit::ConcurrencyLimitLayer::new(LIMIT as usize).layer(inner())
}

fn bench(c: &mut Criterion) {
    // tower-resilience's bulkhead needs the time driver even when it never waits.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("uncontended");
    group.bench_function("bare service", |b| {
        b.to_async(&single).iter_custom(|n| drive(inner(), n));
    });
    group.bench_function("palisade Bulkhead", |b| {
        b.to_async(&single).iter_custom(|n| drive(palisade(), n));
    });
    group.bench_function("tower ConcurrencyLimit", |b| {
        b.to_async(&single).iter_custom(|n| drive(tower_limit(), n));
    });
    group.bench_function("tower-resilience Bulkhead", |b| {
        b.to_async(&single).iter_custom(|n| drive(resilience(), n));
    });
    group.finish();

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("two threads");
    let (bare, ours, theirs, resilient) = (inner(), palisade(), tower_limit(), resilience());
    group.bench_function("bare service", |b| {
        b.iter_custom(|n| contended(&multi, &bare, n));
    });
    group.bench_function("palisade Bulkhead", |b| {
        b.iter_custom(|n| contended(&multi, &ours, n));
    });
    group.bench_function("tower ConcurrencyLimit", |b| {
        b.iter_custom(|n| contended(&multi, &theirs, n));
    });
    group.bench_function("tower-resilience Bulkhead", |b| {
        b.iter_custom(|n| contended(&multi, &resilient, n));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
