//! The readers against fixture files laid out as the kernel lays them out: cgroup v2, cgroup v1,
//! hybrid hosts, no limit (with and without an RSS maximum), unreadable files; descriptor counts
//! and limits.

use std::{fs, path::Path};

use palisade_overload_monitor::{FdMonitor, MemoryMonitor, MemorySource, Monitor, Reading};
use tempfile::TempDir;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A `/proc/self`-like directory whose process is in cgroup `/kubepods/pod1/c1`, with the
/// hierarchies mounted under `<tmp>/sys`.
fn proc_dir(tmp: &TempDir, cgroup: &str, mountinfo: &str) -> std::path::PathBuf {
    let proc = tmp.path().join("proc");
    write(&proc.join("cgroup"), cgroup);
    write(
        &proc.join("mountinfo"),
        &mountinfo.replace("$SYS", &tmp.path().join("sys").display().to_string()),
    );
    write(
        &proc.join("status"),
        "Name:\tserver\nVmPeak:\t  900000 kB\nVmRSS:\t  204800 kB\nThreads:\t4\n",
    );
    proc
}

const V2_MOUNTS: &str = "30 23 0:26 / $SYS/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
const V1_MOUNTS: &str = "\
31 23 0:28 / $SYS/cgroup rw - tmpfs tmpfs rw,mode=755
35 31 0:32 / $SYS/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / $SYS/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn cgroup_v2_working_set_against_memory_max() {
    let tmp = TempDir::new().unwrap();
    let proc = proc_dir(&tmp, "0::/kubepods/pod1/c1\n", V2_MOUNTS);
    let dir = tmp.path().join("sys/cgroup/kubepods/pod1/c1");
    write(&dir.join("memory.max"), "268435456\n");
    write(&dir.join("memory.current"), "250000000\n");
    write(
        &dir.join("memory.stat"),
        "anon 150000000\nfile 100000000\nactive_file 60000000\ninactive_file 50000000\n",
    );
    let mut monitor = MemoryMonitor::detect_in(&proc, None);
    assert_eq!(monitor.sources(), [MemorySource::CgroupV2(dir.clone())]);
    let reading = monitor.read().unwrap().unwrap();
    assert_eq!(
        reading,
        Reading::new(200_000_000, 268_435_456),
        "current minus inactive file pages"
    );

    // With an RSS budget too, the worse of the two counts: 200 MiB of a 250 MiB budget.
    let mut both = MemoryMonitor::detect_in(&proc, Some(250 * 1024 * 1024));
    assert_eq!(both.sources().len(), 2);
    assert_eq!(
        both.read().unwrap().unwrap(),
        Reading::new(204_800 * 1024, 250 * 1024 * 1024)
    );

    // `max` is no limit: with an RSS maximum the process's RSS counts instead.
    write(&dir.join("memory.max"), "max\n");
    let mut monitor = MemoryMonitor::detect_in(&proc, Some(400 * 1024 * 1024));
    assert!(matches!(monitor.sources(), [MemorySource::Rss { .. }]));
    assert_eq!(
        monitor.read().unwrap().unwrap(),
        Reading::new(204_800 * 1024, 400 * 1024 * 1024)
    );
    // Without one, there is nothing to compare with.
    let mut idle = MemoryMonitor::detect_in(&proc, None);
    assert!(idle.sources().is_empty());
    assert_eq!(idle.read().unwrap(), None);
}

#[test]
fn cgroup_v1_on_a_hybrid_host() {
    let tmp = TempDir::new().unwrap();
    // The unified hierarchy has no memory controller: the v1 line is the one.
    let proc = proc_dir(
        &tmp,
        "12:pids:/kubepods/pod1/c1\n4:memory:/kubepods/pod1/c1\n0::/kubepods/pod1/c1\n",
        V1_MOUNTS,
    );
    write(
        &tmp.path()
            .join("sys/cgroup/unified/kubepods/pod1/c1/cgroup.procs"),
        "1\n",
    );
    let dir = tmp.path().join("sys/cgroup/memory/kubepods/pod1/c1");
    write(&dir.join("memory.limit_in_bytes"), "536870912\n");
    write(&dir.join("memory.usage_in_bytes"), "500000000\n");
    write(
        &dir.join("memory.stat"),
        "cache 300000000\nrss 200000000\ninactive_file 1\ntotal_inactive_file 100000000\n",
    );
    let mut monitor = MemoryMonitor::detect_in(&proc, None);
    assert_eq!(monitor.sources(), [MemorySource::CgroupV1(dir.clone())]);
    assert_eq!(
        monitor.read().unwrap().unwrap(),
        Reading::new(400_000_000, 536_870_912),
        "usage minus total_inactive_file (the hierarchy's, not the group's own)"
    );
    // The kernel's "unlimited" is no limit.
    write(&dir.join("memory.limit_in_bytes"), "9223372036854771712\n");
    assert!(MemoryMonitor::detect_in(&proc, None).sources().is_empty());
}

#[test]
fn a_namespaced_container_sees_its_cgroup_at_the_mount_root() {
    let tmp = TempDir::new().unwrap();
    // With a cgroup namespace the process is at `/`, and the mount shows that root.
    let proc = proc_dir(&tmp, "0::/\n", V2_MOUNTS);
    let dir = tmp.path().join("sys/cgroup");
    write(&dir.join("memory.max"), "1000\n");
    write(&dir.join("memory.current"), "900\n");
    write(&dir.join("memory.stat"), "inactive_file 0\n");
    let mut monitor = MemoryMonitor::detect_in(&proc, None);
    assert_eq!(monitor.read().unwrap().unwrap(), Reading::new(900, 1000));
}

#[test]
fn unreadable_files_are_errors_not_panics() {
    let tmp = TempDir::new().unwrap();
    let mut gone = MemoryMonitor::from_source(MemorySource::CgroupV2(tmp.path().join("missing")));
    assert!(gone.read().is_err());
    let dir = tmp.path().join("garbled");
    write(&dir.join("memory.max"), "lots\n");
    write(&dir.join("memory.current"), "1\n");
    write(&dir.join("memory.stat"), "\n");
    let mut garbled = MemoryMonitor::from_source(MemorySource::CgroupV2(dir));
    assert!(garbled.read().is_err());
    let mut no_rss = MemoryMonitor::from_source(MemorySource::Rss {
        status: tmp.path().join("status"),
        max: 1,
    });
    write(&tmp.path().join("status"), "Name:\tkthread\n");
    assert!(no_rss.read().is_err());
}

const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 1048576              files
Max locked memory         65536                65536                bytes
";

#[test]
fn descriptors_against_the_soft_limit() {
    let tmp = TempDir::new().unwrap();
    let proc = tmp.path().join("proc");
    write(&proc.join("limits"), LIMITS);
    for fd in 0..10 {
        write(&proc.join(format!("fd/{fd}")), "");
    }
    let mut monitor = FdMonitor::in_dir(&proc);
    // Ten entries, one of which a live process would count for the listing itself.
    assert_eq!(monitor.read().unwrap(), Some(Reading::new(9, 1024)));

    write(
        &proc.join("limits"),
        &LIMITS.replace(
            "1024                 1048576",
            "unlimited            unlimited",
        ),
    );
    assert_eq!(
        monitor.read().unwrap(),
        None,
        "no limit, nothing to compare with"
    );
    write(&proc.join("limits"), "Max cpu time unlimited\n");
    assert!(monitor.read().is_err());
}

#[test]
fn between_full_counts_the_in_process_count_is_followed() {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };
    let tmp = TempDir::new().unwrap();
    let proc = tmp.path().join("proc");
    write(&proc.join("limits"), LIMITS);
    for fd in 0..11 {
        write(&proc.join(format!("fd/{fd}")), "");
    }
    let connections = Arc::new(AtomicU64::new(3));
    let count = Arc::clone(&connections);
    let mut monitor = FdMonitor::in_dir(&proc)
        .with_in_process_count(Arc::new(move || count.load(Ordering::Relaxed)), 4);
    assert_eq!(monitor.read().unwrap().unwrap().used, 10, "a full count");
    connections.store(50, Ordering::Relaxed);
    assert_eq!(monitor.read().unwrap().unwrap().used, 57, "10 + (50 - 3)");
    connections.store(1, Ordering::Relaxed);
    assert_eq!(monitor.read().unwrap().unwrap().used, 8, "10 + (1 - 3)");
    monitor.read().unwrap();
    // The fourth sample after the first lists the directory again.
    assert_eq!(monitor.read().unwrap().unwrap().used, 10);
}

#[test]
fn this_process_can_be_read() {
    let mut fds = FdMonitor::new();
    let reading = fds.read().unwrap().expect("a limit");
    assert!(
        reading.used >= 3 && reading.used < reading.limit,
        "{reading:?}"
    );
    let mut memory = MemoryMonitor::detect(Some(1 << 40));
    let reading = memory.read().unwrap().expect("a limit or the RSS maximum");
    assert!(reading.used > 0, "{reading:?}");
}
