//! A request answered at once costs the timeout no allocation (no timer is made); one that waits
//! does (its boxed timer), which shows the counter can tell. A counting global allocator, in its
//! own test binary because the allocator is global.

use std::{
    convert::Infallible,
    future::{Future, poll_fn},
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use palisade_timeout::TimeoutLayer;
use tower::{Layer, Service, service_fn};

/// Allocations made by `f` on this thread (`allocation-counter` counts per thread).
fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

/// Polls `future` to completion with a waker that does nothing, counting its `Pending`s.
fn finish<F: Future>(future: F) -> (F::Output, usize) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = pin!(future);
    let mut pending = 0;
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return (output, pending),
            Poll::Pending => pending += 1,
        }
    }
}

fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// A handler whose future is ready at once, or waits once (`Pending`, then ready).
fn handler(
    waits: bool,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> {
    service_fn(move |_: Request<()>| {
        let mut waited = !waits;
        poll_fn(move |_| {
            if waited {
                Poll::Ready(Ok::<_, Infallible>(ok()))
            } else {
                waited = true;
                Poll::Pending
            }
        })
    })
}

/// Allocations of 100 requests through `svc` (requests built first), and their `Pending`s.
fn count<S, B>(mut svc: S) -> (u64, usize)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let requests: Vec<Request<()>> = (0..100).map(|_| Request::new(())).collect();
    let mut pending = 0;
    let allocated = allocations(|| {
        for request in requests {
            finish(poll_fn(|cx| svc.poll_ready(cx))).0.unwrap();
            let (response, waits) = finish(svc.call(request));
            assert_eq!(response.unwrap().status(), 200);
            pending += waits;
        }
    });
    (allocated, pending)
}

/// Timers need the runtime's context; the requests are still polled by hand.
fn on_a_runtime<T>(f: impl FnOnce() -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _context = runtime.enter();
    f()
}

/// Allocations of 100 requests to a handler that answers at once or `waits` once, through the
/// timeout and bare, and how many times the timed requests waited.
fn timed_and_bare(waits: bool) -> (u64, u64, usize) {
    on_a_runtime(|| {
        let layer = TimeoutLayer::new(Duration::from_secs(30)).unwrap();
        // The first call checks the runtime's timer once; count after it.
        let mut timed = layer.layer(handler(waits));
        finish(timed.call(Request::new(()))).0.unwrap();
        let (timed, pending) = count(timed);
        let (bare, _) = count(handler(waits));
        (timed, bare, pending)
    })
}

#[test]
fn a_request_answered_at_once_allocates_nothing_more_than_the_bare_service() {
    let (timed, bare, _) = timed_and_bare(false);
    assert_eq!(
        timed, bare,
        "the timeout allocated for requests answered at once"
    );
}

#[test]
fn a_request_that_waits_arms_a_timer_which_the_counter_sees() {
    let (timed, bare, pending) = timed_and_bare(true);
    assert_eq!(pending, 100, "every request waited once");
    assert!(timed > bare, "no timer armed: {timed} against {bare}");
}
