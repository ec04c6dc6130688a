//! Instruction-count harness for the per-request cost in `benches/guard.rs`: pushes `N` requests
//! for one target through the bare service or the guard on one task, so `valgrind
//! --tool=callgrind` measures the guard deterministically on a noisy machine (criterion's timings
//! are not). Run with two values of `N` and divide the difference in instructions by the
//! difference in `N`, which cancels setup:
//!
//! ```text
//! cargo build --release -p palisade-request-guard --example cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/cost guard clean 100000
//! ```
//!
//! Peers: `bare`, `guard`. Targets: `clean`, `encoded`, `long`, `refused`.

use http::{Request, Uri};
use palisade_request_guard::RequestGuardLayer;
use palisade_testkit::bench::{cost_runtime, drive_with, inner};
use tower::Layer;

fn main() {
    let mut args = std::env::args().skip(1);
    let peer = args.next().unwrap_or_else(|| "guard".to_owned());
    let target = match args.next().as_deref().unwrap_or("clean") {
        "clean" => "/api/v1/users/123/orders?limit=20&cursor=abc",
        "encoded" => "/files/caf%C3%A9%20menu.pdf?q=%E2%9C%93",
        "long" => {
            "/static/assets/javascripts/vendor/some-library/dist/esm/modules/component/index.min.js?v=20261205"
        }
        "refused" => "/files/..%2f..%2fetc%2fpasswd",
        other => panic!("unknown target {other:?}: clean, encoded, long or refused"),
    };
    let n = args.next().map_or(100_000, |n| n.parse().expect("a count"));
    let request = || {
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static(target);
        request
    };
    let rt = cost_runtime();
    let took = match peer.as_str() {
        "bare" => rt.block_on(drive_with(inner(), n, request)),
        "guard" => rt.block_on(drive_with(
            RequestGuardLayer::new().layer(inner()),
            n,
            request,
        )),
        other => panic!("unknown peer {other:?}: bare or guard"),
    };
    println!("{peer} {target}: {n} requests in {took:?}");
}
