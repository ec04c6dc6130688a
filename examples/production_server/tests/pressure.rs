//! The real binary under resource pressure, with its probes on the operations port: at its file
//! descriptor limit (`prlimit --nofile=256`) and near a memory budget. At critical it refuses
//! requests on open connections with 503 and `Connection: close`, stops accepting new public
//! connections (they wait in the backlog), fails readiness naming the resource while liveness and
//! the operations port answer, and recovers by itself, accepting the waiting clients.

use std::time::Duration;

use palisade_testkit::Client;
use support::{
    sigterm, start_binary_in_cgroup, start_binary_with_nofile, start_binary_with_ops_and,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

mod support;

const NOFILE: u32 = 256;

/// The first sample of `metric` (a name with its labels) the server exports, if any.
async fn metric(client: &Client, ops: &str, metric: &str) -> Option<f64> {
    let metrics = client.get(&format!("{ops}/metrics")).await.text();
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(metric)?;
        let value = value.strip_prefix(' ').or_else(|| {
            // A name without labels matches the labelled series too.
            value
                .starts_with('{')
                .then(|| value.rsplit_once(' ').map(|(_, v)| v))?
        })?;
        value.trim().parse().ok()
    })
}

/// A resource's ratio, as the server's monitor last read it.
async fn ratio(client: &Client, ops: &str, resource: &str) -> f64 {
    let name = format!("palisade_overload_resource_ratio{{resource=\"{resource}\"}}");
    metric(client, ops, &name)
        .await
        .unwrap_or_else(|| panic!("the {resource} ratio is exported"))
}

/// `GET path` on an open connection with `priority`: the status and the response head.
async fn raw_get(stream: &mut TcpStream, path: &str, priority: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nx-priority: {priority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0; 16 * 1024];
    let mut read = 0;
    loop {
        let n = stream.read(&mut buffer[read..]).await.unwrap();
        read += n;
        let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
        if n == 0 || text.contains("\r\n\r\n") {
            let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            return (status, text.to_ascii_lowercase());
        }
    }
}

/// Waits (up to 10 s) for a log line containing `needle`.
async fn logged(logs: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needle: &str) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = logs.recv().await {
            if line.contains(needle) {
                return;
            }
        }
        panic!("the server's log ended");
    })
    .await;
    assert!(found.is_ok(), "no log line with {needle:?}");
}

/// Polls `check` every 50 ms for up to 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_descriptor_limit_it_refuses_new_work_keeps_its_probes_and_recovers() {
    let (child, base, ops, mut logs) = start_binary_with_nofile(NOFILE).await;
    let client = Client::new();
    let ops_addr = ops.trim_start_matches("http://").to_owned();
    eventually("the operations port", async || {
        TcpStream::connect(&ops_addr).await.is_ok()
    })
    .await;
    eventually("a first descriptor reading", async || {
        ratio(&client, &ops, "fds").await > 0.0
    })
    .await;
    // Idle connections up to 98 % of the limit (critical is 95 %), counted from what the server
    // held at its last sample: the margin covers descriptors that were open only then.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let open = (ratio(&client, &ops, "fds").await * f64::from(NOFILE)).round() as u32;
    let target = f64::from(NOFILE) * 0.98;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let needed = (target as u32).saturating_sub(open);
    let addr = base.trim_start_matches("http://").to_owned();
    // A client connected before the pressure: its next request is refused, not kept waiting.
    let mut early = TcpStream::connect(&addr).await.expect("connect");
    let mut held = Vec::new();
    for _ in 0..needed {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
    }

    let fresh = || Client::new();
    eventually("readiness failing", async || {
        fresh().get(&format!("{ops}/health/ready")).await.status == 503
    })
    .await;
    let ready = fresh().get(&format!("{ops}/health/ready")).await;
    assert!(
        ready.text().contains("fds"),
        "names the resource: {}",
        ready.text()
    );
    let (status, response_head) = raw_get(&mut early, "/api/items", "critical").await;
    assert_eq!(status, 503, "new work is refused: {response_head}");
    assert!(
        response_head.contains("connection: close"),
        "keep-alive refused: {response_head}"
    );
    assert!(response_head.contains("retry-after"), "{response_head}");
    // New public connections wait in the backlog until the pressure eases.
    logged(&mut logs, "not accepting new connections").await;
    let waiting = tokio::spawn({
        let url = format!("{base}/api/items");
        async move { Client::new().get(&url).await.status.as_u16() }
    });
    assert_eq!(
        fresh().get(&format!("{ops}/health/live")).await.status,
        200,
        "liveness is not resource pressure"
    );

    drop(held);
    assert_eq!(
        waiting.await.unwrap(),
        200,
        "the waiting client is accepted and served once the pressure eases"
    );
    assert_eq!(
        fresh().get(&format!("{ops}/health/ready")).await.status,
        200
    );
    sigterm(&child);
}

/// Sends `GET path` with `priority` on a fresh connection: the status. A server that never
/// answers (accepting paused for good) fails the test instead of hanging it.
async fn status_of(base: &str, path: &str, priority: &str) -> u16 {
    let (client, url) = (Client::new(), format!("{base}{path}"));
    let request = client.get_with_header(&url, "x-priority", priority);
    tokio::time::timeout(Duration::from_secs(20), request)
        .await
        .unwrap_or_else(|_| panic!("GET {path} got no answer in 20 s"))
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_its_memory_limit_it_sheds_low_priority_first_then_refuses_and_recovers() {
    let (mut child, base, ops, cgroup) = start_under_a_memory_limit().await;
    let mut early = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let ops_addr = ops.trim_start_matches("http://").to_owned();
    eventually("the operations port", async || {
        TcpStream::connect(&ops_addr).await.is_ok()
    })
    .await;
    assert_eq!(status_of(&base, "/api/items", "sheddable").await, 200);

    // Reports are added until the monitor sheds the lowest class...
    let client = Client::new();
    let mut reports = Reports::new(&base);
    let shedding = reports
        .climb(&client, &ops, 0.84, async || {
            status_of(&base, "/api/items", "sheddable").await == 503
        })
        .await;
    assert!(shedding, "the lowest class is shed as memory passes 80 %");
    assert_eq!(
        status_of(&base, "/api/items", "critical").await,
        200,
        "while the default class is still served"
    );
    // Readiness names the resource and its ratio.
    if let Err(last) = readiness_names_memory(&ops).await {
        panic!("readiness never named memory within 10 s; last answer: {last}");
    }
    // ...then until it refuses everything but CriticalPlus and readiness fails (read on the
    // operations port: at critical the public port stops accepting).
    let refusing = reports
        .climb(&client, &ops, 0.96, async || {
            Client::new()
                .get(&format!("{ops}/health/ready"))
                .await
                .status
                == 503
        })
        .await;
    assert!(refusing, "readiness fails from 95 %");
    let (status, response_head) = raw_get(&mut early, "/api/items", "critical").await;
    assert_eq!(status, 503, "new work is refused: {response_head}");
    let ready = Client::new().get(&format!("{ops}/health/ready")).await;
    assert!(ready.text().contains("memory"), "{}", ready.text());
    assert_eq!(
        Client::new()
            .get(&format!("{ops}/health/live"))
            .await
            .status,
        200
    );
    let memory = ratio(&client, &ops, "memory").await;
    assert!(memory < 1.1, "shedding held it near the budget: {memory}");

    // The reports finish (a last one sent as the level turned may have been refused at once),
    // their memory goes back, and the server recovers by itself.
    let mut completed = 0;
    for report in reports.held {
        match report.await.unwrap() {
            200 => completed += 1,
            503 => {}
            other => panic!("a report ended with {other}"),
        }
    }
    assert!(completed >= 20, "admitted reports complete: {completed}");
    eventually("recovery", async || {
        status_of(&base, "/api/items", "sheddable").await == 200
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "never killed: it shed before the limit"
    );
    sigterm(&child);
    let _ = child.wait().await;
    drop(cgroup);
}

/// Memory-hungry requests the test holds open: `/api/report` keeps 4 MiB for 10 s.
struct Reports {
    url: String,
    held: Vec<tokio::task::JoinHandle<u16>>,
}

impl Reports {
    /// 4 MiB of the 256 MiB limit.
    const SHARE: f64 = 4.0 / 256.0;

    fn new(base: &str) -> Self {
        let url = format!("{base}/api/report?mb=4&ms=10000");
        Self {
            url,
            held: Vec::new(),
        }
    }

    /// Adds reports towards `target` (a memory ratio) until `done`; false if it never is. Each
    /// round adds what the last reading says is missing, then waits until the server holds every
    /// report still open and its monitor's reading has moved, so the climb takes a second or two
    /// whatever this machine's speed: well inside the 10 s a report lasts, and without
    /// overshooting a level on a stale reading.
    async fn climb(
        &mut self,
        client: &Client,
        ops: &str,
        target: f64,
        mut done: impl AsyncFnMut() -> bool,
    ) -> bool {
        for _ in 0..40 {
            if done().await {
                return true;
            }
            let before = ratio(client, ops, "memory").await;
            let missing = ((target - before) / Self::SHARE).ceil();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let added = missing.max(1.0) as usize;
            for _ in 0..added {
                let url = self.url.clone();
                self.held.push(tokio::spawn(async move {
                    Client::new().get(&url).await.status.as_u16()
                }));
            }
            for _ in 0..100 {
                let open = self.held.iter().filter(|r| !r.is_finished()).count();
                let in_flight = metric(client, ops, "palisade_concurrency_in_flight").await;
                #[allow(clippy::cast_precision_loss)]
                if in_flight.is_some_and(|n| n >= open as f64) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Then until the monitor's reading shows the round (less one report, for what the
            // allocator and the cgroup count differently); it falls short only when the server
            // refused some of them, and then the wait ends after two seconds.
            #[allow(clippy::cast_precision_loss)]
            let expected = before + (added as f64 - 1.0) * Self::SHARE;
            for _ in 0..100 {
                if ratio(client, ops, "memory").await >= expected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        false
    }
}

/// Polls readiness every 50 ms for up to 10 s until it names memory and its ratio: a warning
/// while it still passes, or already a failure if memory climbed on while the check's cached
/// result aged. Otherwise the last answer, to say what readiness saw instead.
async fn readiness_names_memory(ops: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..200 {
        let ready = Client::new().get(&format!("{ops}/health/ready")).await;
        let text = ready.text();
        if text.contains("memory at") && (ready.status == 503 || text.contains("\"warn\"")) {
            return Ok(());
        }
        last = format!("{} {text}", ready.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

/// The binary under a real 256 MiB memory cgroup when this machine lets the test make one
/// (exceeding it is an OOM kill), else a 256 MiB RSS budget; its monitors sample every 50 ms, so
/// the 4 MiB reports the test adds cannot run far past a level between two samples. As deployed
/// (see deploy/kubernetes), glibc gives large blocks back at `free`, so memory falls when the
/// reports end and the server can recover.
async fn start_under_a_memory_limit()
-> (tokio::process::Child, String, String, Option<MemoryCgroup>) {
    const LIMIT: u64 = 256 << 20;
    let budget = LIMIT.to_string();
    let env = [
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("PALISADE_OVERLOAD__INTERVAL", "0.05"),
        // Room for every report in flight: memory, not the demo's small in-flight limit, the api
        // bulkhead or the per-client rate limit (the test is one client sending dozens of
        // reports at once), is what this test presses on.
        ("PALISADE_CONCURRENCY__MAX_IN_FLIGHT", "1000"),
        ("PALISADE_BULKHEADS__API__MAX_CONCURRENT", "500"),
        ("PALISADE_RATE_LIMIT__POLICIES__PER_IP__BURST", "1000"),
    ];
    let cgroup = MemoryCgroup::create(LIMIT);
    let (child, base, ops, _logs) = if let Some(cgroup) = &cgroup {
        start_binary_in_cgroup(&cgroup.0, &env).await
    } else {
        let mut env = env.to_vec();
        env.push(("PALISADE_OVERLOAD__MEMORY__MAX_RSS", &budget));
        start_binary_with_ops_and(&env).await
    };
    eprintln!(
        "memory limit: {}",
        cgroup.as_ref().map_or(
            "an RSS budget (no writable memory cgroup here)".into(),
            |c| { format!("the cgroup {}", c.0.display()) }
        )
    );
    (child, base, ops, cgroup)
}

/// A memory cgroup made for one test (v1, or v2 where the memory controller is delegated),
/// removed when dropped.
struct MemoryCgroup(std::path::PathBuf);

impl MemoryCgroup {
    fn create(limit: u64) -> Option<Self> {
        let name = format!("palisade-test-{}", std::process::id());
        for (root, file) in [
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
            ("/sys/fs/cgroup", "memory.max"),
        ] {
            let dir = std::path::Path::new(root).join(&name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            if dir.join(file).is_file() && std::fs::write(dir.join(file), limit.to_string()).is_ok()
            {
                return Some(Self(dir));
            }
            let _ = std::fs::remove_dir(&dir);
        }
        None
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once its process has exited; removing it is best effort.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
