//! Cost per rate-limit check against `governor` (keyed `RateLimiter::keyed`, `DashMap` store, the
//! same quota), in the same run: one hot key and one million live keys, on one thread and on two
//! threads sharing one limiter. Both sit in a service in front of the same trivial inner service
//! and read the key from `ConnectInfo` (governor the way `tower_governor` uses it), so the numbers
//! compare the limiters; "bare service" is the request cost without any limiter. Our fields are
//! off in the comparison (governor sends none) and measured separately.
//!
//! Then, each in a fresh process, the memory one million keys take (RSS growth).
//!
//! `cargo bench -p palisade-rate-limit --bench check -- --warm-up-time 1 --measurement-time 2`

use std::{
    cell::Cell,
    collections::HashMap,
    convert::Infallible,
    future::Ready,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use palisade_rate_limit::{PolicyConfig, RateLimitLayer};
use palisade_testkit::bench::{Inner, inner};
use tower::{Layer, Service, ServiceExt};

const MILLION: u32 = 1_000_000;

/// One request per minute, bursts of 50 million: every check admits, and every key stays live
/// (each visit moves its TAT a minute ahead, far longer than a pass over a million keys takes), so
/// a million keys are a million entries for both limiters. (A TAT runs at most 100 years ahead:
/// that bounds the burst.)
fn quota() -> (PolicyConfig, Quota) {
    let ours = PolicyConfig::per_minute(1).burst(50_000_000);
    let theirs = Quota::per_minute(NonZeroU32::new(1).unwrap())
        .allow_burst(NonZeroU32::new(50_000_000).unwrap());
    (ours, theirs)
}

fn ours(headers: bool) -> palisade_rate_limit::RateLimit<Inner> {
    RateLimitLayer::builder()
        .policy("bench", quota().0)
        .max_keys(1_100_000)
        .headers(headers)
        .build()
        .expect("valid policy")
        .layer(inner())
}

/// governor in a service, as `tower_governor` uses it: key from the peer, 429 when refused.
#[derive(Clone)]
struct Governed {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    inner: Inner,
}

fn governed() -> Governed {
    Governed {
        limiter: Arc::new(RateLimiter::keyed(quota().1)),
        inner: inner(),
    }
}

impl Service<Request<()>> for Governed {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        if self.limiter.check_key(&ip).is_ok() {
            self.inner.call(request)
        } else {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            std::future::ready(Ok(response))
        }
    }
}

/// A request from client `i` of `keys`: 10.0.0.0 + i.
fn request(i: u32, keys: u32) -> Request<()> {
    let mut request = Request::new(());
    let ip = Ipv4Addr::from(0x0a00_0000 + i % keys);
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(IpAddr::V4(ip), 40_000)));
    request
}

async fn drive<S, B>(mut svc: S, iters: u64, keys: u32, offset: u32) -> Duration
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let next = Cell::new(offset);
    let start = Instant::now();
    for _ in 0..iters {
        let i = next.get();
        next.set(i.wrapping_add(1));
        let response = svc
            .ready()
            .await
            .expect("ready")
            .call(request(i, keys))
            .await
            .expect("call");
        assert_eq!(response.status(), StatusCode::OK);
        drop(black_box(response));
    }
    start.elapsed()
}

fn two_threads<S, B>(rt: &tokio::runtime::Runtime, svc: &S, iters: u64, keys: u32) -> Duration
where
    S: Service<Request<()>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: Send + 'static,
{
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..2u32)
            .map(|t| tokio::spawn(drive(svc.clone(), iters / 2 + 1, keys, t * (keys / 2))))
            .collect();
        for task in tasks {
            task.await.expect("bench task");
        }
        start.elapsed()
    })
}

/// A foldhash table holding `keys` entries, keyed like the limiters' client addresses.
fn probe_table(keys: u32) -> HashMap<u64, u64, foldhash::fast::RandomState> {
    let mut table =
        HashMap::with_capacity_and_hasher(keys as usize, foldhash::fast::RandomState::default());
    for i in 0..keys {
        table.insert(u64::from(0x0a00_0000 + i), 0);
    }
    table
}

fn probe(
    table: &mut HashMap<u64, u64, foldhash::fast::RandomState>,
    iters: u64,
    keys: u32,
) -> Duration {
    // Each probe's key depends on the previous probe's result (always zero, which the compiler
    // cannot know through `black_box`), so probes run one after another as a limiter's requests
    // do, instead of overlapping their cache misses.
    let mut carry = 0u32;
    let start = Instant::now();
    for i in 0..iters {
        #[allow(clippy::cast_possible_truncation)]
        let key = u64::from(0x0a00_0000 + (i as u32).wrapping_add(carry) % keys);
        if let Some(slot) = table.get_mut(&key) {
            *slot = slot.wrapping_add(1);
            // The top bit of a count that starts at 0: always zero.
            #[allow(clippy::cast_possible_truncation)]
            let zero = (black_box(*slot) >> 63) as u32;
            carry = zero;
        }
    }
    start.elapsed()
}

/// Touches every key once, so the timed runs find a full store.
fn fill<S, B>(rt: &tokio::runtime::Runtime, svc: &S, keys: u32)
where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    rt.block_on(drive(svc.clone(), u64::from(keys), keys, 0));
}

fn bench(c: &mut Criterion) {
    let single = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for (label, keys) in [("1 key", 1), ("1M keys", MILLION)] {
        let (plain, fields, theirs) = (ours(false), ours(true), governed());
        fill(&single, &plain, keys);
        fill(&single, &fields, keys);
        fill(&single, &theirs, keys);
        let mut group = c.benchmark_group(format!("one thread, {label}"));
        group.bench_function("bare service", |b| {
            b.to_async(&single)
                .iter_custom(|n| drive(inner(), n, keys, 0));
        });
        group.bench_function("palisade RateLimit", |b| {
            b.to_async(&single)
                .iter_custom(|n| drive(plain.clone(), n, keys, 0));
        });
        group.bench_function("palisade RateLimit + RateLimit fields", |b| {
            b.to_async(&single)
                .iter_custom(|n| drive(fields.clone(), n, keys, 0));
        });
        group.bench_function("governor keyed", |b| {
            b.to_async(&single)
                .iter_custom(|n| drive(theirs.clone(), n, keys, 0));
        });
        // The floor under any keyed in-memory limiter: one probe and write of a `u64` per request
        // in a table of `keys` entries, the same key sequence, no service, clock or lock.
        let mut table = probe_table(keys);
        group.bench_function("floor: one table probe", |b| {
            b.iter_custom(|n| probe(&mut table, n, keys));
        });
        drop(table);
        group.finish();

        let mut group = c.benchmark_group(format!("two threads, {label}"));
        let bare = inner();
        group.bench_function("bare service", |b| {
            b.iter_custom(|n| two_threads(&multi, &bare, n, keys));
        });
        group.bench_function("palisade RateLimit", |b| {
            b.iter_custom(|n| two_threads(&multi, &plain, n, keys));
        });
        group.bench_function("governor keyed", |b| {
            b.iter_custom(|n| two_threads(&multi, &theirs, n, keys));
        });
        group.finish();
    }
}

criterion_group!(benches, bench);

/// Resident set size in bytes, from `/proc/self/status` (Linux); 0 elsewhere.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

const MEMORY_ENV: &str = "PALISADE_RATE_LIMIT_MEMORY";

/// In a child process: fill one limiter with a million keys and print the RSS growth per key.
fn memory_child(which: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let before = rss();
    if which == "palisade" {
        let svc = ours(false);
        fill(&rt, &svc, MILLION);
        report(which, before, rss());
        black_box(svc);
    } else {
        let svc = governed();
        fill(&rt, &svc, MILLION);
        assert_eq!(svc.limiter.len(), MILLION as usize);
        report(which, before, rss());
    }
}

fn report(which: &str, before: u64, after: u64) {
    #[allow(clippy::cast_precision_loss)]
    let per_key = after.saturating_sub(before) as f64 / f64::from(MILLION);
    println!("memory: {which}: {per_key:.1} bytes per key (RSS growth over 1M live keys)");
}

fn main() {
    if let Ok(which) = std::env::var(MEMORY_ENV) {
        memory_child(&which);
        return;
    }
    let exe = std::env::current_exe().expect("bench executable");
    for which in ["palisade", "governor"] {
        let status = std::process::Command::new(&exe)
            .env(MEMORY_ENV, which)
            .status()
            .expect("memory child");
        assert!(status.success(), "memory measurement failed");
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
