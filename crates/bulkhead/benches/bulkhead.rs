//! Added cost per request of a bulkhead (acquire + release of a slot) against tower's
//! `ConcurrencyLimit` and tower-resilience's bulkhead (0.13, which boxes its future and releases
//! when the future completes), measured in the same run: uncontended (one task) and contended (two tasks on two worker threads sharing one
//! limiter). Each request is `ready` + `call` + dropping the response (which releases our permit;
//! tower releases when the future completes).
//!
//! `cargo bench -p palisade-bulkhead --bench bulkhead`

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use palisade_bulkhead::BulkheadLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

const LIMIT: u32 = 1_000_000;

type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

fn inner() -> Inner {
    fn handle(_: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
    service_fn(handle as fn(_) -> _)
}

fn palisade() -> palisade_bulkhead::BulkheadService<Inner> {
    BulkheadLayer::builder("bench")
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

async fn drive<S, B>(mut svc: S, iters: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        drop(black_box(response));
    }
    start.elapsed()
}

/// Two tasks on two worker threads, each with its own clone of the service (as axum clones a
/// route's service per connection), sharing the bulkhead state.
fn contended<S, B>(rt: &tokio::runtime::Runtime, svc: &S, iters: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: Send + 'static,
{
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..2)
            .map(|_| tokio::spawn(drive(svc.clone(), iters / 2 + 1)))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
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
