//! With the collector down, requests are unaffected, the export queue never grows past its
//! capacity, lost spans are counted, and the warning is rate-limited.
//!
//! One test in this binary: it installs the global subscriber, because the warning comes from
//! the export thread, which only sees the global one.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, routing::get};
use palisade_telemetry::{TelemetryLayer, TraceSampler, TracingConfig};
use palisade_testkit::{Client, TestServer};
use tracing_subscriber::{Registry, fmt::MakeWriter, layer::SubscriberExt};

/// Log lines, captured.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const REQUESTS: u64 = 2000;
const QUEUE: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_dropped_spans_not_requests_or_memory() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);

    let guard = TracingConfig {
        endpoint: Some(format!("http://{addr}")),
        sampler: TraceSampler::AlwaysOn,
        max_queue_size: QUEUE,
        max_export_batch_size: QUEUE,
        export_timeout: Duration::from_secs(2),
        warn_interval: Duration::from_secs(3600),
        log_to_stdout: false,
        ..TracingConfig::default()
    }
    .build()
    .unwrap();
    let logs = Capture::default();
    let subscriber = Registry::default()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(logs.clone()),
        )
        .with(guard.layer());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .layer(TelemetryLayer::new());
    let server = TestServer::start(app).await;
    let client = Client::new();
    let mut max_queued = 0;
    for _ in 0..REQUESTS {
        let response = client.get(&server.url("/work")).await;
        assert_eq!(response.status, 200, "requests are unaffected");
        assert_eq!(response.text(), "done");
        let stats = guard.stats();
        assert!(
            stats.queued <= QUEUE,
            "the queue grew past its capacity: {stats:?}"
        );
        max_queued = max_queued.max(stats.queued);
    }
    server.shutdown().await;

    // Quiesce: a flush waits for the export in progress and exports (fails) what is queued.
    // It fails, since the collector is down; after it the worker is idle.
    let flushed = tokio::task::block_in_place(|| guard.force_flush());
    assert!(flushed.is_ok(), "the flush returns when done: {flushed:?}");

    let stats = guard.stats();
    assert_eq!(stats.max_queue_size, QUEUE);
    assert_eq!((stats.queued, stats.exporting), (0, 0), "{stats:?}");
    assert!(
        stats.dropped_queue_full > 0,
        "{REQUESTS} spans against a queue of {QUEUE} and a dead collector must overflow: \
         {stats:?} (max queued {max_queued})"
    );
    assert!(stats.export_failures > 0, "{stats:?}");
    assert_eq!(stats.exported, 0, "nothing can reach a closed port");
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_export_failed,
        REQUESTS,
        "every span is accounted for: {stats:?}"
    );
    // The final export fails too (the collector is still down): an error, not a hang.
    let _ = guard.shutdown().await;

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("span export is failing or falling behind"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per interval, however many exports failed:\n{logs}"
    );
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains("failed_exports="), "{}", warnings[0]);
}
