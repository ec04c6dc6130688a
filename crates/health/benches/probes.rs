//! Added cost of the health layer per request: pass-through (every application request pays
//! it) against the bare service, and the cost of answering each probe (readiness with two
//! cached checks, with and without details). Each request is `ready` + `call` + reading the
//! body.
//!
//! `cargo bench -p palisade-health --bench probes`

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use palisade_core::OverloadState;
use palisade_health::{Check, Health, HealthLayer, Probe};
use tower::{Layer, Service, ServiceExt, service_fn};

type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

fn inner() -> Inner {
    fn handle(_: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
    service_fn(handle as fn(_) -> _)
}

async fn health(details: bool) -> Health<Inner> {
    let cached = |name: &'static str| {
        Check::from_fn(name, || async { true }).on_demand(Duration::from_secs(3600))
    };
    let layer = HealthLayer::builder()
        .overload_state(OverloadState::new())
        .include_details(details)
        .readiness_check(cached("db"))
        .readiness_check(cached("cache"))
        .build()
        .expect("valid layer");
    layer.handle().mark_started();
    // Fill the caches: the benchmark measures probes answered from them.
    let _ = layer.handle().report(Probe::Readiness).await;
    layer.layer(inner())
}

async fn drive<S, B>(mut svc: S, path: &'static str, iters: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let request = Request::get(path).body(()).unwrap();
        let response = svc.ready().await.unwrap().call(request).await.unwrap();
        black_box(response.into_body().collect().await.unwrap());
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let plain = rt.block_on(health(false));
    let detailed = rt.block_on(health(true));

    let mut group = c.benchmark_group("pass-through");
    group.bench_function("bare service", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(inner(), "/api/items", n));
    });
    group.bench_function("health layer", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(plain.clone(), "/api/items", n));
    });
    group.finish();

    let mut group = c.benchmark_group("probe");
    group.bench_function("live", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(plain.clone(), "/health/live", n));
    });
    group.bench_function("ready, 2 cached checks", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(plain.clone(), "/health/ready", n));
    });
    group.bench_function("ready, 2 cached checks, details", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(detailed.clone(), "/health/ready", n));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
