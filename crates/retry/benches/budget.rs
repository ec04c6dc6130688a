//! The retry budget's cost per call (a deposit and a withdrawal), alone and with two threads
//! contending, beside tower's `TpsBudget` (which is not exact: tower#857).

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_retry::{BudgetConfig, RetryBudget};
use tower::retry::budget::{Budget, TpsBudget};

fn budgets(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let ours = RetryBudget::new(&BudgetConfig::default()).unwrap();
    let tower = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    let mut group = c.benchmark_group("budget");
    group.bench_function("palisade deposit+withdraw", |b| {
        b.iter(|| {
            ours.deposit(black_box(None));
            black_box(ours.try_withdraw(None))
        });
    });
    group.bench_function("tower TpsBudget deposit+withdraw", |b| {
        b.iter(|| {
            tower.deposit();
            black_box(tower.withdraw())
        });
    });
    let shared = Arc::new(ours);
    group.bench_function("palisade deposit+withdraw, 2 threads", |b| {
        b.iter_custom(|iters| {
            contended(&shared, iters, |b| {
                b.deposit(None);
                black_box(b.try_withdraw(None));
            })
        });
    });
    let tower = Arc::new(tower);
    group.bench_function("tower TpsBudget deposit+withdraw, 2 threads", |b| {
        b.iter_custom(|iters| {
            contended(&tower, iters, |b| {
                b.deposit();
                black_box(b.withdraw());
            })
        });
    });
    group.finish();
}

/// Time for `iters` operations on each of two threads at once, per operation pair.
fn contended<T: Send + Sync + 'static>(target: &Arc<T>, iters: u64, op: fn(&T)) -> Duration {
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let target = Arc::clone(target);
            let handle = tokio::runtime::Handle::current();
            std::thread::spawn(move || {
                let _guard = handle.enter();
                for _ in 0..iters {
                    op(&target);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, budgets);
criterion_main!(benches);
