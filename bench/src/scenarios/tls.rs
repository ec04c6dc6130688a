//! `tls`: the cost of TLS in `palisade::serve` against plain TCP and against axum-server's
//! rustls listener, on the same hello-world router, in the same run. Three measures, each a
//! closed loop of concurrent clients for the scenario's duration:
//!
//! - full handshakes per second: connect, full TLS 1.3 handshake, one request, close;
//! - resumed handshakes per second: the same with the clients' session cache (tickets);
//! - keep-alive requests per second over [`KEEP_ALIVE_CONNECTIONS`] open connections.
//!
//! For plain TCP the "handshake" rows are connections per second (connect, one request, close).
//! The certificates are made here (rcgen, ECDSA P-256); every server runs one worker thread on
//! core 0, the clients (rustls with ring) on core 1. Both servers set `TCP_NODELAY` on accepted
//! sockets (`Stack::bind` does; axum-server through its `NoDelayAcceptor`): without it a TLS
//! handshake's flights wait for delayed ACKs, and either server manages about 360 handshakes
//! a second here.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use palisade::{ServerConfig, TlsConfig};
use palisade_testkit::tls::Pki;
use rustls::{
    ClientConfig, RootCertStore,
    client::Resumption,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde::Serialize;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::{
    process::ServerProcess,
    report::{Row, out_dir},
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

pub(super) struct TlsHandshakes;

const SYSTEMS: [(&str, &str, bool); 3] = [
    ("palisade-plain", "palisade serve, plain TCP", false),
    ("palisade-tls", "palisade serve, TLS", true),
    ("axum-server-tls", "axum-server 0.9, TLS", true),
];

/// Clients opening connections at once in the handshake measures.
const HANDSHAKE_CLIENTS: usize = 16;
/// Open connections in the keep-alive measure.
const KEEP_ALIVE_CONNECTIONS: usize = 32;

fn hello() -> Router {
    Router::new().route("/hello", get(|| async { "Hello, World!" }))
}

/// One system's result.
#[derive(Debug, Serialize)]
struct Summary {
    system: String,
    /// Full handshakes (TLS) or connections (plain) per second, each with one request.
    handshakes_per_s: f64,
    /// Resumed handshakes per second (TLS only).
    resumed_handshakes_per_s: Option<f64>,
    /// The share of the resumed measure's handshakes that the server resumed.
    resumed_share: Option<f64>,
    /// Keep-alive requests per second.
    achieved_rps: f64,
    errors: u64,
}

/// A client: plain TCP or TLS with or without session resumption.
#[derive(Clone)]
enum Dialer {
    Plain,
    Tls(TlsConnector),
}

fn connector(ca_pem: &str, resume: bool) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        let _ = roots.add(cert);
    }
    #[allow(deprecated)] // ring, as both servers use
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = Resumption::disabled();
    }
    TlsConnector::from(Arc::new(config))
}

async fn request<IO>(io: IO, requests: Option<Instant>, done: &AtomicU64) -> Result<(), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    loop {
        let request = Request::get("/hello")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        done.fetch_add(1, Ordering::Relaxed);
        // One request per connection, or requests until the deadline.
        match requests {
            Some(deadline) if Instant::now() < deadline => {}
            _ => return Ok(()),
        }
    }
}

/// Connects (and handshakes); returns whether the server resumed the session.
async fn dial(
    dialer: &Dialer,
    addr: SocketAddr,
    keep_alive_until: Option<Instant>,
    done: &AtomicU64,
) -> Result<bool, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match dialer {
        Dialer::Plain => request(tcp, keep_alive_until, done).await.map(|()| false),
        Dialer::Tls(connector) => {
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            request(tls, keep_alive_until, done).await.map(|()| resumed)
        }
    }
}

/// Runs `clients` loops for `duration`: per second, what was done; the share resumed; errors.
async fn closed_loop(
    dialer: Dialer,
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    keep_alive: bool,
) -> (f64, f64, u64) {
    let deadline = Instant::now() + duration;
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (dialer, done, resumed, connections, errors) = (
                dialer.clone(),
                done.clone(),
                resumed.clone(),
                connections.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let until = keep_alive.then_some(deadline);
                    match dial(&dialer, addr, until, &done).await {
                        Ok(r) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            resumed.fetch_add(u64::from(r), Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let share =
        resumed.load(Ordering::Relaxed) as f64 / connections.load(Ordering::Relaxed).max(1) as f64;
    (rate, share, errors.load(Ordering::Relaxed))
}

/// The three measures of one server: full and resumed handshakes per second, the share
/// resumed, keep-alive requests per second, and errors.
async fn measure(
    ca_pem: &str,
    tls: bool,
    addr: SocketAddr,
    timing: Timing,
) -> (f64, f64, f64, f64, u64) {
    let (full, resuming) = if tls {
        (
            Dialer::Tls(connector(ca_pem, false)),
            Dialer::Tls(connector(ca_pem, true)),
        )
    } else {
        (Dialer::Plain, Dialer::Plain)
    };
    let duration = timing.duration;
    // Warm-up: the server's first connections, the clients' first tickets.
    closed_loop(full.clone(), addr, 4, timing.warmup, true).await;
    let (handshakes, _, e1) =
        closed_loop(full.clone(), addr, HANDSHAKE_CLIENTS, duration, false).await;
    let (resumed_rate, share, e2) =
        closed_loop(resuming, addr, HANDSHAKE_CLIENTS, duration, false).await;
    let (rps, _, e3) = closed_loop(full, addr, KEEP_ALIVE_CONNECTIONS, duration, true).await;
    (handshakes, resumed_rate, share, rps, e1 + e2 + e3)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Scenario for TlsHandshakes {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn title(&self) -> &'static str {
        "tls: handshakes and keep-alive throughput, palisade serve (TLS and plain) vs axum-server"
    }

    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        let files = || -> Result<(String, String), String> {
            Ok((
                args.text("cert").ok_or("--cert is required")?.to_owned(),
                args.text("key").ok_or("--key is required")?.to_owned(),
            ))
        };
        let palisade = |tls: TlsConfig| {
            let config = ServerConfig {
                tls,
                ..ServerConfig::default()
            };
            let server =
                palisade::Server::new(config).overload_state(palisade::core::OverloadState::new());
            App::PalisadeNoDelay(hello(), Box::new(server))
        };
        match system {
            "palisade-plain" => Ok(palisade(TlsConfig::default())),
            "palisade-tls" => {
                let (cert, key) = files()?;
                Ok(palisade(TlsConfig::new(cert, key)))
            }
            "axum-server-tls" => {
                let (cert, key) = files()?;
                Ok(App::AxumServerTls(hello(), cert.into(), key.into()))
            }
            other => Err(format!("tls has no system {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let pki = Pki::new("bench CA");
            let server = pki.server();
            let cert = pki.write("server.pem", &server.cert_pem);
            let key = pki.write("server.key", &server.key_pem);
            let args = ServerArgs::default()
                .with("cert", &cert.display())
                .with("key", &key.display());
            let mut measures: Vec<[Vec<f64>; 4]> =
                SYSTEMS.iter().map(|_| Default::default()).collect();
            let mut errors = vec![0u64; SYSTEMS.len()];
            // Rounds alternate the systems, so drift on the shared machine hits each alike.
            for _ in 0..timing.rounds {
                for (i, (id, _, tls)) in SYSTEMS.iter().enumerate() {
                    let process = ServerProcess::start(self.name(), id, &args)?;
                    let (handshakes, resumed_rate, share, rps, e) =
                        measure(&pki.ca_pem(), *tls, process.addr, timing).await;
                    measures[i][0].push(handshakes);
                    measures[i][1].push(resumed_rate);
                    measures[i][2].push(share);
                    measures[i][3].push(rps);
                    errors[i] += e;
                }
            }
            let mut summaries = Vec::new();
            let mut rows = Vec::new();
            for (i, (_, name, tls)) in SYSTEMS.iter().enumerate() {
                let [full, resumed, share, rps] = std::mem::take(&mut measures[i]);
                let summary = Summary {
                    system: (*name).to_owned(),
                    handshakes_per_s: median(full),
                    resumed_handshakes_per_s: tls.then(|| median(resumed)),
                    resumed_share: tls.then(|| median(share)),
                    achieved_rps: median(rps),
                    errors: errors[i],
                };
                eprintln!(
                    "{name:<28} {:>8.0} handshakes/s {:>8} resumed/s {:>8.0} keep-alive rps",
                    summary.handshakes_per_s,
                    summary
                        .resumed_handshakes_per_s
                        .map_or("-".into(), |r| format!("{r:.0}")),
                    summary.achieved_rps
                );
                rows.push(Row {
                    system: (*name).to_owned(),
                    class: "keep-alive".to_owned(),
                    offered_rps: None,
                    achieved_rps: summary.achieved_rps,
                    goodput_rps: summary.achieved_rps,
                    p50_ms: f64::NAN,
                    p99_ms: f64::NAN,
                    p999_ms: f64::NAN,
                    errors: summary.errors,
                    rejected: 0,
                    reject_p99_ms: None,
                    timed_out: 0,
                    ratio_to_baseline: Some(summary.handshakes_per_s),
                    ratio_to_peer_stack: None,
                    configuration: None,
                    path: None,
                    server_peak_rss_mib: None,
                    server_rss_growth_mib: None,
                    ..Row::default()
                });
                summaries.push(summary);
            }
            let mut table = String::from(
                "\ntls: medians of the rounds; ratio column = full handshakes per second\n\n| system | full handshakes/s | resumed handshakes/s | resumed share | keep-alive rps | errors |\n|---|---:|---:|---:|---:|---:|\n",
            );
            for s in &summaries {
                let _ = writeln!(
                    table,
                    "| {} | {:.0} | {} | {} | {:.0} | {} |",
                    s.system,
                    s.handshakes_per_s,
                    s.resumed_handshakes_per_s
                        .map_or("-".into(), |r| format!("{r:.0}")),
                    s.resumed_share.map_or("-".into(), |r| format!("{r:.2}")),
                    s.achieved_rps,
                    s.errors,
                );
            }
            println!("{table}");
            let path = out_dir().join("tls-summary.json");
            let json = serde_json::to_string_pretty(&summaries).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(out_dir()).map_err(|e| e.to_string())?;
            std::fs::write(&path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(rows)
        })
    }
}
