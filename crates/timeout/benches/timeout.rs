//! Added cost per request of the timeout, against tower-http's `TimeoutLayer` and the bare
//! service in the same run: a handler that answers at once (no timer armed here, one armed and
//! removed by tower-http), and one that waits once before answering (both arm a timer; this
//! layer boxes its timer). Each request is `ready` + `call` + dropping the response.
//!
//! `cargo bench -p palisade-timeout --bench timeout`

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use palisade_testkit::bench::{drive, inner};
use tower::{Layer, service_fn};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Answers after yielding to the runtime once: a handler that waits.
async fn waits_once(_: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::task::yield_now().await;
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let palisade = palisade_timeout::TimeoutLayer::new(TIMEOUT).unwrap();
    let tower_http = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        TIMEOUT,
    );
    let mut group = c.benchmark_group("answers at once");
    group.bench_function("bare service", |b| {
        b.to_async(&rt).iter_custom(|n| drive(inner(), n));
    });
    group.bench_function("palisade Timeout", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(palisade.layer(inner()), n));
    });
    group.bench_function("tower-http Timeout", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(tower_http.layer(inner()), n));
    });
    group.finish();

    let mut group = c.benchmark_group("waits once");
    group.bench_function("bare service", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(service_fn(waits_once), n));
    });
    group.bench_function("palisade Timeout", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(palisade.layer(service_fn(waits_once)), n));
    });
    group.bench_function("tower-http Timeout", |b| {
        b.to_async(&rt)
            .iter_custom(|n| drive(tower_http.layer(service_fn(waits_once)), n));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
