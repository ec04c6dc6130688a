//! Drivers for the crates' per-request microbenchmarks: one trivial inner service, and loops that
//! push requests through a layered service on one task or on two threads, so every crate measures
//! its layer the same way as its peer's.

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceExt, service_fn};

/// The inner service of every microbenchmark: answers `ok` at once.
pub type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

/// The inner service.
pub fn inner() -> Inner {
    fn handle(_: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
    service_fn(handle as fn(_) -> _)
}

/// `iters` requests through `svc`, one after the other: `ready` + `call` + dropping the response
/// (which ends body-scoped permits). Returns the time taken.
///
/// # Panics
///
/// When the service fails: a benchmark of a broken layer must not report a time.
pub async fn drive<S, B>(svc: S, iters: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    drive_with(svc, iters, || Request::new(())).await
}

/// [`drive`] with each request made by `request` (a path, headers).
///
/// # Panics
///
/// When the service fails.
pub async fn drive_with<S, R, B>(
    mut svc: S,
    iters: u64,
    request: impl Fn() -> Request<R>,
) -> Duration
where
    S: Service<Request<R>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let response = svc
            .ready()
            .await
            .expect("ready")
            .call(request())
            .await
            .expect("call");
        drop(black_box(response));
    }
    start.elapsed()
}

/// The command line of a crate's `examples/cost.rs` (the instruction-count harness run under
/// `valgrind --tool=callgrind`): the peer to measure (default `palisade`) and the number of
/// requests (default 100 000).
///
/// # Panics
///
/// When the count is not a number: a harness must not measure something else than asked.
pub fn cost_args() -> (String, u64) {
    let mut args = std::env::args().skip(1);
    let peer = args.next().unwrap_or_else(|| "palisade".to_owned());
    let n = args.next().map_or(100_000, |n| n.parse().expect("a count"));
    (peer, n)
}

/// The runtime of a cost harness: one thread, with the time driver (some peers need it even when
/// they never wait), so the peers' instruction counts are comparable.
///
/// # Panics
///
/// When the runtime cannot be built.
pub fn cost_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// `iters` requests split over two tasks on `rt` (a two-worker runtime), each with its own clone
/// of `svc`, as axum clones a route's service per connection, so shared layer state is contended.
///
/// # Panics
///
/// When the service fails or a task panics.
pub fn contended<S, B>(rt: &tokio::runtime::Runtime, svc: &S, iters: u64) -> Duration
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
            task.await.expect("bench task");
        }
        start.elapsed()
    })
}
