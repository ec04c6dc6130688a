//! Instruction-count harness: `n` requests through one limiter on one thread, for
//! `valgrind --tool=callgrind` (repeatable where wall-clock benchmarks on a shared machine are
//! not). Peers: `palisade` (fields off), `palisade-fields`, `governor`, `bare`; keys: 1 or more.
//!
//! `cargo build --release -p palisade-rate-limit --example cost`
//! `valgrind --tool=callgrind target/release/examples/cost palisade 100000 1`

use std::{
    convert::Infallible,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
};

use axum::extract::ConnectInfo;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Request, StatusCode};
use palisade_rate_limit::{PolicyConfig, RateLimitLayer};
use palisade_testkit::bench::{cost_args, cost_runtime, inner};
use tower::{Layer, Service, ServiceExt};

fn request(i: u32, keys: u32) -> Request<()> {
    let mut request = Request::new(());
    let ip = Ipv4Addr::from(0x0a00_0000 + i % keys);
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(IpAddr::V4(ip), 40_000)));
    request
}

async fn run<S, B>(mut svc: S, n: u64, keys: u32)
where
    S: Service<Request<()>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
{
    for i in 0..n {
        #[allow(clippy::cast_possible_truncation)]
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(request(i as u32, keys))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        black_box(response);
    }
}

/// One request per hour, bursts of 800 000 (a TAT runs at most 100 years ahead): every check
/// admits as long as no key gets more than 800 000 requests, and every key stays live for the
/// whole run even at callgrind's pace (each visit moves its TAT an hour ahead), so neither limiter
/// forgets and re-inserts keys between two passes over a million of them.
fn main() {
    let (peer, n) = cost_args();
    let keys: u32 = std::env::args()
        .nth(3)
        .map_or(1, |k| k.parse().expect("a key count"));
    let rt = cost_runtime();
    let ours = |headers| {
        RateLimitLayer::builder()
            .policy("bench", PolicyConfig::per_hour(1).burst(800_000))
            .max_keys(2_000_000)
            .headers(headers)
            .build()
            .unwrap()
            .layer(inner())
    };
    match peer.as_str() {
        "palisade" => rt.block_on(run(ours(false), n, keys)),
        "palisade-fields" => rt.block_on(run(ours(true), n, keys)),
        "governor" => {
            let limiter: DefaultKeyedRateLimiter<IpAddr> = RateLimiter::keyed(
                Quota::per_hour(NonZeroU32::new(1).unwrap())
                    .allow_burst(NonZeroU32::new(800_000).unwrap()),
            );
            let svc = tower::service_fn(move |request: Request<()>| {
                let ip = request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
                    .unwrap();
                assert!(limiter.check_key(&ip).is_ok());
                let mut inner = inner();
                async move { Ok::<_, Infallible>(inner.call(request).await.unwrap()) }
            });
            rt.block_on(run(svc, n, keys));
        }
        _ => rt.block_on(run(inner(), n, keys)),
    }
}
