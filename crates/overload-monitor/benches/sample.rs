//! The cost of one sample of each built-in monitor on this machine, and what four samples a
//! second (the default interval) cost in CPU time.
//!
//! `cargo bench -p palisade-overload-monitor --bench sample`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_overload_monitor::{FdMonitor, LagMonitor, MemoryMonitor, Monitor};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("one sample");
    // The container's cgroup when it has a limit, else this process's RSS against 1 GiB.
    let mut memory = MemoryMonitor::detect(Some(1 << 30));
    println!("memory sources: {:?}", memory.sources());
    group.bench_function("memory", |b| b.iter(|| memory.read().unwrap()));
    // Descriptors: this process's, plus 1 000 more held open, as a busy server's sockets.
    let held: Vec<std::fs::File> = (0..1000)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let mut fds = FdMonitor::new();
    group.bench_function("fds, 1 000 open", |b| b.iter(|| fds.read().unwrap()));
    drop(held);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut lag = LagMonitor::new(Duration::from_millis(100), Duration::from_millis(50));
    rt.block_on(async { lag.start() });
    group.bench_function("lag", |b| b.iter(|| lag.read().unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
