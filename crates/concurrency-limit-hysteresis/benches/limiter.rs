//! Added cost per request of the in-flight limiter against tower's `ConcurrencyLimit`, measured in
//! the same run: uncontended (one task) and contended (two tasks on two worker threads sharing one
//! limiter). Each request is `ready` + `call` + dropping the response (which releases our permit;
//! tower releases when the future completes).
//!
//! `cargo bench -p palisade-concurrency-limit-hysteresis --bench limiter`

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, Watermark};
use palisade_core::OverloadState;
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
/// route's service per connection), sharing the limiter state.
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
