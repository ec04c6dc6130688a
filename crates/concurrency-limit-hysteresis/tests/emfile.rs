//! Accept errors such as `EMFILE` (too many open files) must neither spin the accept loop nor kill
//! the server. This test runs in its own process (its own test binary) because it lowers the
//! process's open-file limit with `prlimit` (util-linux).

use std::{net::SocketAddr, process::Command, time::Duration};

use axum::{Router, routing::get};
use palisade_concurrency_limit_hysteresis::{ConnectionLimitConfig, ConnectionLimitListener};
use palisade_core::OverloadState;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// User plus system CPU time of this process, in clock ticks, read from an already open
/// `/proc/self/stat` (opening it would need a descriptor, and there are none to spare).
fn cpu_ticks(stat_file: &mut std::fs::File) -> u64 {
    use std::io::{Read, Seek};
    let mut stat = String::new();
    stat_file.rewind().expect("rewind");
    stat_file
        .read_to_string(&mut stat)
        .expect("read /proc/self/stat");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let field = |i: usize| fields[i].parse::<u64>().expect("number");
    field(11) + field(12) // utime, stime (fields 14 and 15 of the whole line)
}

fn set_open_file_limit(limit: usize) {
    let pid = std::process::id().to_string();
    let status = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={limit}:")])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit failed");
}

async fn hello(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_neither_spins_nor_kills_the_server() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = ConnectionLimitListener::with_overload_state(
        tcp,
        ConnectionLimitConfig::default(),
        OverloadState::new(),
    )
    .unwrap();
    let app = Router::new().route("/", get(|| async { "alive" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert!(hello(addr).await.ends_with("alive"));

    let mut stat_file = std::fs::File::open("/proc/self/stat").expect("open /proc/self/stat");
    // Leave room for a few descriptors, then use them all up with client sockets: the kernel
    // completes their handshakes, but the server's accept fails with EMFILE.
    set_open_file_limit(open_files() + 8);
    let mut clients = Vec::new();
    while let Ok(stream) = TcpStream::connect(addr).await {
        clients.push(stream);
        assert!(
            clients.len() < 64,
            "the open-file limit did not take effect"
        );
    }

    let (ticks_before, wall_before) = (cpu_ticks(&mut stat_file), std::time::Instant::now());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ticks =
        f64::from(u32::try_from(cpu_ticks(&mut stat_file) - ticks_before).unwrap_or(u32::MAX));
    let wall_ticks = wall_before.elapsed().as_secs_f64() * 100.0; // USER_HZ is 100 on Linux
    // A spinning accept loop would burn a whole core: about as many CPU ticks as wall ticks.
    assert!(
        ticks < wall_ticks * 0.3,
        "the accept loop spun: {ticks} CPU ticks in {wall_ticks:.0} wall ticks"
    );

    // Descriptors come back: the server accepts again and still serves.
    drop(clients);
    set_open_file_limit(4096);
    let answer = tokio::time::timeout(Duration::from_secs(5), hello(addr))
        .await
        .expect("served again");
    assert!(answer.ends_with("alive"), "{answer}");
}
