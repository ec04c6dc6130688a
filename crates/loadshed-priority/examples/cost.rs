//! Instruction-count harness for the per-request cost in `benches/loadshed.rs`: pushes `N`
//! requests (`GET /api/items` with `x-priority: sheddable`, no overload) through one peer on one
//! task, so `valgrind --tool=callgrind` can compare peers deterministically on a noisy machine
//! (criterion's timings are not). Run twice with different `N` and divide the difference in
//! instructions by the difference in `N`, which cancels setup:
//!
//! ```text
//! cargo build --release -p palisade-loadshed-priority --example cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/cost palisade 100000
//! ```
//!
//! Peers: `bare`, `palisade`, `tower`.

use http::Request;
use palisade_core::OverloadState;
use palisade_loadshed_priority::LoadShedLayer;
use palisade_testkit::bench::{cost_args, cost_runtime, drive_with, inner};
use tower::Layer;

fn request() -> Request<()> {
    Request::get("/api/items")
        .header("x-priority", "sheddable")
        .body(())
        .expect("a valid request")
}

fn main() {
    let (peer, n) = cost_args();
    let rt = cost_runtime();
    let took = match peer.as_str() {
        "bare" => rt.block_on(drive_with(inner(), n, request)),
        "palisade" => {
            let layer = LoadShedLayer::builder()
                .overload_state(OverloadState::new())
                .build()
                .expect("valid shedder");
            rt.block_on(drive_with(layer.layer(inner()), n, request))
        }
        "tower" => rt.block_on(drive_with(
            tower::load_shed::LoadShedLayer::new().layer(inner()),
            n,
            request,
        )),
        other => panic!("unknown peer {other:?}: bare, palisade or tower"),
    };
    println!("{peer}: {n} requests in {took:?}");
}
