//! Instruction-count harness for the per-request cost in `benches/limiter.rs`: pushes `N`
//! requests through one peer on one task, so `valgrind --tool=callgrind` can compare peers
//! deterministically on a noisy machine (criterion's timings are not). Run twice with different
//! `N` and divide the difference in instructions by the difference in `N`, which cancels setup:
//!
//! ```text
//! cargo build --release -p palisade-concurrency-limit-hysteresis --example cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/cost palisade 100000
//! ```
//!
//! Peers: `bare`, `palisade`, `tower`.

use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, Watermark};
use palisade_core::OverloadState;
use palisade_testkit::bench::{cost_args, cost_runtime, drive, inner};
use tower::Layer;

const LIMIT: u32 = 1_000_000;

fn main() {
    let (peer, n) = cost_args();
    let rt = cost_runtime();
    let took = match peer.as_str() {
        "bare" => rt.block_on(drive(inner(), n)),
        // As in the criterion bench.
        "palisade" => {
            let layer = ConcurrencyLimitLayer::builder()
                .max_in_flight(LIMIT)
                .high_water(Watermark::fraction(0.8))
                .low_water(Watermark::fraction(0.6))
                .overload_state(OverloadState::new())
                .build()
                .expect("valid limiter");
            rt.block_on(drive(layer.layer(inner()), n))
        }
        "tower" => rt.block_on(drive(
            tower::limit::ConcurrencyLimitLayer::new(LIMIT as usize).layer(inner()),
            n,
        )),
        other => panic!("unknown peer {other:?}: bare, palisade or tower"),
    };
    println!("{peer}: {n} requests in {took:?}");
}
