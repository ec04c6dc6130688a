//! Added cost per request of the priority load shedder against tower's `LoadShed`, in the same
//! run, on the admit path (no overload): classification by header, the overload read, the
//! decision, and the in-flight guard until the body ends.
//!
//! `cargo bench -p palisade-loadshed-priority --bench loadshed`

use std::{convert::Infallible, hint::black_box, time::Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use palisade_core::OverloadState;
use palisade_loadshed_priority::LoadShedLayer;
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

fn request() -> Request<()> {
    Request::get("/api/items")
        .header("x-priority", "sheddable")
        .body(())
        .unwrap()
}

async fn drive<S, B>(mut svc: S, iters: u64) -> std::time::Duration
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let response = svc.ready().await.unwrap().call(request()).await.unwrap();
        drop(black_box(response));
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ours = LoadShedLayer::builder()
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    let mut group = c.benchmark_group("admit path");
    group.bench_function("bare service", |b| {
        b.to_async(&runtime).iter_custom(|n| drive(inner(), n));
    });
    group.bench_function("palisade LoadShedLayer", |b| {
        b.to_async(&runtime)
            .iter_custom(|n| drive(ours.layer(inner()), n));
    });
    group.bench_function("tower LoadShed", |b| {
        b.to_async(&runtime)
            .iter_custom(|n| drive(tower::load_shed::LoadShedLayer::new().layer(inner()), n));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
