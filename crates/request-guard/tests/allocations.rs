//! Clean requests cost no allocation: a counting global allocator around the guarded service and
//! the bare service, in the same process. (Its own test binary, because the allocator is global.)

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use palisade_request_guard::{RequestGuardLayer, Verdict};
use tower::{Layer, Service, service_fn};

/// Allocations made by `f` on this thread (`allocation-counter` installs a counting global
/// allocator; counts are per thread, so the harness's other threads do not count).
fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

/// Polls a future that is ready at once (every future here is), without a runtime.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future was not ready"),
    }
}

type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

fn inner() -> Inner {
    fn handle(_: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
    service_fn(handle as fn(_) -> _)
}

const CLEAN: &[&str] = &[
    "/",
    "/api/v1/users/123",
    "/api/v1/users/123?fields=name,email&sort=-created",
    "/files/my%20file.txt",
    "/caf%C3%A9/%F0%9F%98%80?q=%E2%9C%93",
    "/.well-known/acme-challenge/abc",
    "/a..b/file.tar.gz",
];

/// Allocations of `rounds` requests for every clean target through `svc`, requests built first.
fn count<S, B>(mut svc: S, rounds: usize) -> u64
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let requests: Vec<Request<()>> = (0..rounds)
        .flat_map(|_| CLEAN.iter())
        .map(|t| {
            let mut request = Request::new(());
            *request.uri_mut() = Uri::from_static(t);
            request
        })
        .collect();
    allocations(|| {
        for request in requests {
            ready(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            let response = ready(svc.call(request)).unwrap();
            assert_eq!(response.status(), 200);
            drop(response);
        }
    })
}

#[test]
fn a_clean_request_allocates_nothing_more_than_the_bare_service() {
    let layer = RequestGuardLayer::new();
    let guarded = count(layer.layer(inner()), 100);
    let bare = count(inner(), 100);
    assert_eq!(guarded, bare, "the guard allocated on clean requests");
}

#[test]
fn checking_clean_targets_allocates_nothing() {
    let layer = RequestGuardLayer::new();
    let n = allocations(|| {
        for _ in 0..100 {
            for target in CLEAN {
                assert_eq!(layer.check(&Method::GET, target.as_bytes()), Verdict::Pass);
            }
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn the_counter_sees_allocations() {
    // The two tests above pass trivially if the allocator counted nothing.
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 64]))) > 0);
    // And a refused request does allocate (its response), so the comparison above can fail.
    let layer = RequestGuardLayer::new();
    let mut svc = layer.layer(inner());
    let mut request = Request::new(());
    *request.uri_mut() = Uri::from_static("/a/../b");
    assert!(allocations(|| drop(ready(svc.call(request)).unwrap())) > 0);
}
