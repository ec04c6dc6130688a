//! Cost per request of `RequestIdLayer` against tower-http's `SetRequestIdLayer` +
//! `PropagateRequestIdLayer`, in the same run, with and without an incoming id, for UUID v4 and
//! v7; plus the cost of making one id (and under two threads at once).
//!
//! `cargo bench -p palisade-request-id -- --warm-up-time 1 --measurement-time 3`
//!
//! Each iteration builds a request, calls the stack, and polls the response future once (the
//! inner service answers at once), so the numbers are the layers' own work plus a fixed request
//! and response construction that the `baseline` row measures. No tracing subscriber is
//! installed (the span is disabled, as it is for tower-http, which makes none).

use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use palisade_request_id::{IdFormat, RequestIdLayer};
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_http::request_id::{
    MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

const INCOMING: HeaderValue = HeaderValue::from_static("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b");

/// tower-http's `MakeRequestUuid`, but UUID v7 (`Uuid::now_v7`), written the same way.
#[derive(Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().to_string().parse().ok()?;
        Some(RequestId::new(id))
    }
}

fn inner() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = Ready<Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<()>| ready(Ok::<_, Infallible>(Response::new(()))))
}

/// One request through `service`, polled to completion (one poll).
fn one<S>(service: &mut S, incoming: bool) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let mut request = Request::new(());
    if incoming {
        request.headers_mut().insert("x-request-id", INCOMING);
    }
    let mut future = pin!(service.call(request));
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => unreachable!("the inner service answers at once"),
    }
}

fn bench_stacks(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id");
    for (case, incoming) in [("no_incoming_id", false), ("valid_incoming_id", true)] {
        let mut baseline = inner();
        group.bench_function(BenchmarkId::new("baseline", case), |b| {
            b.iter(|| black_box(one(&mut baseline, incoming)));
        });

        let mut palisade_v7 = RequestIdLayer::new().layer(inner());
        group.bench_function(BenchmarkId::new("palisade_v7", case), |b| {
            b.iter(|| black_box(one(&mut palisade_v7, incoming)));
        });

        let mut palisade_v4 = RequestIdLayer::builder()
            .format(IdFormat::UuidV4)
            .build()
            .expect("valid configuration")
            .layer(inner());
        group.bench_function(BenchmarkId::new("palisade_v4", case), |b| {
            b.iter(|| black_box(one(&mut palisade_v4, incoming)));
        });

        let mut tower_http_v4 = ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .service(inner());
        group.bench_function(BenchmarkId::new("tower_http_v4", case), |b| {
            b.iter(|| black_box(one(&mut tower_http_v4, incoming)));
        });

        let mut tower_http_v7 = ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuidV7))
            .layer(PropagateRequestIdLayer::x_request_id())
            .service(inner());
        group.bench_function(BenchmarkId::new("tower_http_v7", case), |b| {
            b.iter(|| black_box(one(&mut tower_http_v7, incoming)));
        });
    }
    group.finish();
}

/// Two threads making 10 000 ids each.
fn two_threads(make: fn() -> uuid::Uuid) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(move || {
                for _ in 0..10_000 {
                    black_box(make());
                }
            });
        }
    });
}

/// Making one id: `uuid`'s functions (what tower-http uses) against this crate's per-thread
/// generator; then two threads generating at once (the shared `now_v7` mutex is contended).
fn bench_generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    group.bench_function("uuid_new_v4", |b| {
        b.iter(|| black_box(uuid::Uuid::new_v4()));
    });
    group.bench_function("uuid_now_v7", |b| {
        b.iter(|| black_box(uuid::Uuid::now_v7()));
    });
    group.bench_function("palisade_v4", |b| {
        b.iter(|| black_box(IdFormat::UuidV4.generate_uuid()));
    });
    group.bench_function("palisade_v7", |b| {
        b.iter(|| black_box(IdFormat::UuidV7.generate_uuid()));
    });

    // Two threads, 10 000 ids each; time per batch.
    group.sample_size(20);
    group.bench_function("two_threads_x10000/uuid_now_v7", |b| {
        b.iter(|| two_threads(uuid::Uuid::now_v7));
    });
    group.bench_function("two_threads_x10000/palisade_v7", |b| {
        b.iter(|| two_threads(|| IdFormat::UuidV7.generate_uuid()));
    });
    group.finish();
}

criterion_group!(benches, bench_stacks, bench_generation);
criterion_main!(benches);
