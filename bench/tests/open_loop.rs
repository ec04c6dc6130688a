//! The generator is open loop: a server that stalls for one second, once, shows that second in
//! the open-loop tail latency, while a closed-loop run of the same server hides it in its
//! percentiles (coordinated omission: a stalled server also stalls a closed-loop client, so the
//! requests that would have waited are never sent).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use palisade_bench::load::{self, LoadSpec, Mode, RequestClass};

const STALL: Duration = Duration::from_secs(1);

/// A hello server on its own thread whose whole runtime freezes for [`STALL`] at the first request
/// after `stall_after` (as a garbage-collection pause or a blocking call would freeze it).
fn stalling_server(stall_after: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stall_at = std::time::Instant::now() + stall_after;
    let stalled = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let stalled = Arc::clone(&stalled);
                tokio::spawn(async move {
                    let service = service_fn(move |_| {
                        let due = std::time::Instant::now() >= stall_at;
                        if due && !stalled.swap(true, Ordering::Relaxed) {
                            // Blocks the server's only thread: every connection stalls.
                            std::thread::sleep(STALL);
                        }
                        async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

fn spec(target: SocketAddr, mode: Mode, connections: usize) -> LoadSpec {
    LoadSpec {
        target,
        mode,
        connections,
        duration: Duration::from_secs(4),
        warmup: Duration::from_millis(500),
        grace: Duration::from_secs(3),
        mix: vec![RequestClass::get("hello", "/")],
    }
}

fn ms(micros: u64) -> f64 {
    f64::from(u32::try_from(micros).unwrap_or(u32::MAX)) / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_includes_a_server_stall() {
    // 200 requests/s; the stall starts 2 s in, well inside the measured window (0.5 s to 4.5 s).
    let report = load::run(spec(
        stalling_server(Duration::from_secs(2)),
        Mode::OpenLoop { rate: 200.0 },
        16,
    ))
    .await
    .unwrap();
    let total = report.total();
    let p999 = ms(total.success.value_at_quantile(0.999));
    let p99 = ms(total.success.value_at_quantile(0.99));
    assert!(p999 >= 900.0, "the 1 s stall must show in p99.9: {p999} ms");
    // About a second's worth of requests (200 of 800) were scheduled during the stall.
    assert!(
        p99 >= 500.0,
        "a quarter of the requests waited: p99 {p99} ms"
    );
    assert_eq!(total.errors, 0);
    assert_eq!(report.timed_out, 0);
    assert_eq!(
        total.succeeded(),
        total.scheduled,
        "every scheduled request was answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_hides_the_same_stall() {
    // One connection, back to back: during the stall exactly one request waits.
    let report = load::run(spec(
        stalling_server(Duration::from_secs(2)),
        Mode::ClosedLoop,
        1,
    ))
    .await
    .unwrap();
    let total = report.total();
    let max = ms(total.success.max());
    let p99 = ms(total.success.value_at_quantile(0.99));
    assert!(
        max >= 900.0,
        "the stall happened and one request saw it: max {max} ms"
    );
    assert!(p99 < 100.0, "but the percentiles hide it: p99 {p99} ms");
}
