//! Instruction-count harness for the per-request cost in `benches/bulkhead.rs`: pushes `N`
//! requests through one peer on one task, so `valgrind --tool=callgrind` can compare peers
//! deterministically on a noisy machine (criterion's timings are not). Run twice with different
//! `N` and divide the difference in instructions by the difference in `N`, which cancels setup:
//!
//! ```text
//! cargo build --release -p palisade-bulkhead --example cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/cost palisade 100000
//! ```
//!
//! Peers: `bare`, `palisade`, `tower`, `resilience`.

use palisade_bulkhead::BulkheadLayer;
use palisade_testkit::bench::{cost_args, cost_runtime, drive, inner};
use tower::Layer;

const LIMIT: u32 = 1_000_000;

fn main() {
    let (peer, n) = cost_args();
    let rt = cost_runtime();
    let took = match peer.as_str() {
        "bare" => rt.block_on(drive(inner(), n)),
        "palisade" => {
            let layer = BulkheadLayer::builder()
                .name("cost")
                .max_concurrent(LIMIT)
                .build()
                .expect("valid bulkhead");
            rt.block_on(drive(layer.layer(inner()), n))
        }
        "tower" => rt.block_on(drive(
            tower::limit::ConcurrencyLimitLayer::new(LIMIT as usize).layer(inner()),
            n,
        )),
        "resilience" => {
            let layer = tower_resilience_bulkhead::BulkheadLayer::builder()
                .max_concurrent_calls(LIMIT as usize)
                .reject_when_full()
                .build()
                .expect("valid tower-resilience bulkhead");
            rt.block_on(drive(layer.layer(inner()), n))
        }
        other => panic!("unknown peer {other:?}: bare, palisade, tower or resilience"),
    };
    println!("{peer}: {n} requests in {took:?}");
}
