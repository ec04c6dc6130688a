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

use std::hint::black_box;

use http::{Request, Response};
use palisade_core::OverloadState;
use palisade_loadshed_priority::LoadShedLayer;
use palisade_testkit::bench::inner;
use tower::{Layer, Service, ServiceExt};

fn request() -> Request<()> {
    Request::get("/api/items")
        .header("x-priority", "sheddable")
        .body(())
        .expect("a valid request")
}

async fn drive<S, B>(mut svc: S, n: u64)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let response = svc
            .ready()
            .await
            .expect("ready")
            .call(request())
            .await
            .expect("call");
        drop(black_box(response));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let peer = args.next().unwrap_or_else(|| "palisade".to_owned());
    let n: u64 = args.next().map_or(100_000, |n| n.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match peer.as_str() {
        "bare" => rt.block_on(drive(inner(), n)),
        "palisade" => {
            let layer = LoadShedLayer::builder()
                .overload_state(OverloadState::new())
                .build()
                .expect("valid shedder");
            rt.block_on(drive(layer.layer(inner()), n));
        }
        "tower" => rt.block_on(drive(
            tower::load_shed::LoadShedLayer::new().layer(inner()),
            n,
        )),
        other => panic!("unknown peer {other:?}: bare, palisade or tower"),
    }
    println!("{peer}: {n} requests");
}
