//! Per-call cost of a closed circuit breaker, against tower-resilience's circuit breaker (0.13)
//! and recloser (1.4), measured in the same run, with one thread and with two threads sharing one
//! breaker:
//!
//! - `guard`: the breaker around a call that succeeds at once. Palisade's permit
//!   (`try_acquire` + `success`) with a count window of 100 (the default) and with a 10 s time
//!   window,
//!   against `recloser::Recloser::call` (ring buffer of 100).
//! - `tower service`: `ready` + `call` + dropping the response through a layer around a
//!   `service_fn` that answers at once. Palisade's server layer (the call is recorded when the
//!   response body is dropped) with both windows, against tower-resilience's `CircuitBreakerLayer`
//!   (count window of 100), and the bare service.
//!
//! Two-thread numbers are wall time per call for `n` calls split over two threads, so they show
//! contention on the shared state (a perfectly scalable breaker would halve them).
//!
//! `cargo bench -p palisade-circuit-breaker --bench breaker`

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_circuit_breaker::{Breaker, CircuitBreakerLayer};
use palisade_testkit::bench::{Inner, contended, drive, inner};
use tower::Layer;

const WINDOW: u32 = 100;

fn count_breaker() -> Breaker {
    Breaker::builder()
        .name("bench-count")
        .count_window(WINDOW)
        .build()
        .expect("valid breaker")
}

fn time_breaker() -> Breaker {
    Breaker::builder()
        .name("bench-time")
        .time_window(Duration::from_secs(10), 10)
        .build()
        .expect("valid breaker")
}

fn recloser() -> recloser::Recloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(WINDOW as usize)
        .half_open_len(3)
        .open_wait(Duration::from_secs(30))
        .build()
}

fn palisade_service(breaker: Breaker) -> palisade_circuit_breaker::CircuitBreaker<Inner> {
    CircuitBreakerLayer::new(breaker).layer(inner())
}

fn tower_resilience_service() -> tower_resilience_circuitbreaker::CircuitBreaker<
    Inner,
    tower_resilience_circuitbreaker::DefaultClassifier,
> {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(WINDOW as usize)
        .minimum_number_of_calls(5)
        .wait_duration_in_open(Duration::from_secs(30))
        .build()
        .expect("valid tower-resilience breaker")
        .layer_fn(inner())
}

/// `n` guarded calls on one thread.
fn guard_palisade(breaker: &Breaker, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let permit = breaker.try_acquire().expect("closed");
        black_box(&permit);
        permit.success();
    }
    start.elapsed()
}

fn guard_recloser(breaker: &recloser::Recloser, n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let result = breaker.call(|| Ok::<u64, ()>(black_box(i)));
        black_box(result.is_ok());
    }
    start.elapsed()
}

/// `n` calls split over two threads sharing `state`.
fn two_threads<T: Sync>(state: &T, n: u64, run: fn(&T, u64) -> Duration) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        let a = s.spawn(|| run(state, n / 2 + 1));
        let b = s.spawn(|| run(state, n / 2 + 1));
        a.join().expect("thread");
        b.join().expect("thread");
    });
    start.elapsed()
}

fn guards(c: &mut Criterion) {
    let (count, time, reclose) = (count_breaker(), time_breaker(), recloser());
    let mut group = c.benchmark_group("guard, 1 thread");
    group.bench_function("palisade (count window)", |b| {
        b.iter_custom(|n| guard_palisade(&count, n));
    });
    group.bench_function("palisade (time window)", |b| {
        b.iter_custom(|n| guard_palisade(&time, n));
    });
    group.bench_function("recloser", |b| {
        b.iter_custom(|n| guard_recloser(&reclose, n));
    });
    group.finish();

    let mut group = c.benchmark_group("guard, 2 threads");
    group.bench_function("palisade (count window)", |b| {
        b.iter_custom(|n| two_threads(&count, n, guard_palisade));
    });
    group.bench_function("palisade (time window)", |b| {
        b.iter_custom(|n| two_threads(&time, n, guard_palisade));
    });
    group.bench_function("recloser", |b| {
        b.iter_custom(|n| two_threads(&reclose, n, guard_recloser));
    });
    group.finish();
}

fn services(c: &mut Criterion) {
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tower service, 1 thread");
    group.bench_function("bare service", |b| {
        b.to_async(&single).iter_custom(|n| drive(inner(), n));
    });
    let (count, time) = (count_breaker(), time_breaker());
    group.bench_function("palisade (count window)", |b| {
        b.to_async(&single)
            .iter_custom(|n| drive(palisade_service(count.clone()), n));
    });
    group.bench_function("palisade (time window)", |b| {
        b.to_async(&single)
            .iter_custom(|n| drive(palisade_service(time.clone()), n));
    });
    group.bench_function("tower-resilience", |b| {
        b.to_async(&single)
            .iter_custom(|n| drive(tower_resilience_service(), n));
    });
    group.finish();

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tower service, 2 threads");
    let bare = inner();
    let (ours_count, ours_time) = (
        palisade_service(count_breaker()),
        palisade_service(time_breaker()),
    );
    let theirs = tower_resilience_service();
    group.bench_function("bare service", |b| {
        b.iter_custom(|n| contended(&multi, &bare, n));
    });
    group.bench_function("palisade (count window)", |b| {
        b.iter_custom(|n| contended(&multi, &ours_count, n));
    });
    group.bench_function("palisade (time window)", |b| {
        b.iter_custom(|n| contended(&multi, &ours_time, n));
    });
    group.bench_function("tower-resilience", |b| {
        b.iter_custom(|n| contended(&multi, &theirs, n));
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = guards, services
}
criterion_main!(benches);
