//! Added cost per request of the request guard, against the bare service in the same run: clean
//! targets (plain, and percent-encoded, which takes the decoding path), and refused ones (which
//! build a problem response). Each request is `ready` + `call` + dropping the response; the
//! request is built the same way for every variant, so differences are the guard's.
//! The path checker alone is measured too.
//!
//! `cargo bench -p palisade-request-guard --bench guard`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Uri};
use palisade_request_guard::{RequestGuard, RequestGuardLayer};
use palisade_testkit::bench::{Inner, drive_with, inner};
use tower::Layer;

const CLEAN: &str = "/api/v1/users/123/orders?limit=20&cursor=abc";
const ENCODED: &str = "/files/caf%C3%A9%20menu.pdf?q=%E2%9C%93";
const LONG: &str = "/static/assets/javascripts/vendor/some-library/dist/esm/modules/component/index.min.js?v=20261205";
const HOSTILE: &str = "/files/..%2f..%2fetc%2fpasswd";

fn guarded() -> RequestGuard<Inner> {
    RequestGuardLayer::new().layer(inner())
}

fn request(target: &'static str) -> impl Fn() -> Request<()> {
    move || {
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static(target);
        request
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("per request");
    for (name, target) in [
        ("clean", CLEAN),
        ("encoded", ENCODED),
        ("long", LONG),
        ("refused", HOSTILE),
    ] {
        group.bench_function(format!("bare service/{name}"), |b| {
            b.to_async(&rt)
                .iter_custom(|n| drive_with(inner(), n, request(target)));
        });
        group.bench_function(format!("RequestGuard/{name}"), |b| {
            b.to_async(&rt)
                .iter_custom(|n| drive_with(guarded(), n, request(target)));
        });
    }
    group.finish();

    let layer = RequestGuardLayer::new();
    let mut group = c.benchmark_group("check");
    for (name, target) in [("clean", CLEAN), ("encoded", ENCODED), ("long", LONG)] {
        group.bench_function(name, |b| {
            b.iter(|| layer.check(&Method::GET, black_box(target.as_bytes())));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
