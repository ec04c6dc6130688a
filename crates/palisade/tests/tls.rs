//! `serve` over TLS with certificates made here (rcgen) and a real rustls client: mutual TLS
//! with a SAN allow-list checked in the handshake, each wrong certificate refused there with a
//! counted reason, the handshake timeout, hot reload (good and broken), TLS 1.2 only when
//! asked, and the header timeout, 431, connection limit and drain behaving as over plain TCP.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use metrics_util::{
    MetricKind,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};
use palisade::{
    ClientAuth, Server, ServerConfig, TlsConfig, TlsVersion, core::ClientIdentity,
    core::OverloadState, health::DrainOutcome,
};
use palisade_testkit::tls::{Issued, Pki, TlsClient, send};
use support::{Hold, Running};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

mod support;

const ALLOWED: &str = "uri:spiffe://prod/ns/payments/*";

/// One recorder for the whole test binary: the handshake counters are process-wide.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only recorder");
        snapshotter
    })
}

/// A counter's total so far. The debugging recorder's snapshots reset counters, and tests run
/// in parallel: every read adds what it took to totals kept here.
fn counter(name: &str, labels: &[(&str, &str)]) -> f64 {
    static TOTALS: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());
    let key = |name: &str, labels: &mut Vec<(String, String)>| {
        labels.sort();
        format!("{name}{labels:?}")
    };
    let mut totals = TOTALS.lock().unwrap();
    for (composite, value) in palisade_testkit::metrics::snapshot(snapshotter()) {
        if let (MetricKind::Counter, DebugValue::Counter(n)) = (composite.kind(), value) {
            let mut labels: Vec<(String, String)> = composite
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            #[allow(clippy::cast_precision_loss)]
            let n = n as f64;
            *totals
                .entry(key(composite.key().name(), &mut labels))
                .or_default() += n;
        }
    }
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    totals.get(&key(name, &mut wanted)).copied().unwrap_or(0.0)
}

fn handshakes(reason: &str) -> f64 {
    let outcome = if reason == "ok" { "ok" } else { "failed" };
    counter(
        "palisade_tls_handshakes_total",
        &[("outcome", outcome), ("reason", reason)],
    )
}

/// The server's files: its certificate and key, and the client CA.
struct Files {
    pki: Pki,
    tls: TlsConfig,
}

fn files(mutual: bool) -> Files {
    let pki = Pki::new("Palisade Test CA");
    let server = pki.server();
    let mut tls = TlsConfig::new(
        pki.write("server.pem", &server.cert_pem),
        pki.write("server.key", &server.key_pem),
    );
    if mutual {
        tls.client_ca = Some(pki.write("clients.pem", &pki.ca_pem()));
        tls.allowed_sans = vec![ALLOWED.to_owned()];
    }
    Files { pki, tls }
}

fn server(tls: TlsConfig) -> Server {
    snapshotter();
    let mut config = ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        tls,
        ..ServerConfig::default()
    };
    config.drain.propagation_delay = Duration::ZERO;
    config.drain.deadline = Duration::from_secs(5);
    Server::new(config).overload_state(OverloadState::new())
}

fn whoami(served: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/",
        get(move |identity: Option<ClientIdentity>| async move {
            served.fetch_add(1, Ordering::Relaxed);
            identity.map_or("anonymous".to_owned(), |i| i.name().to_owned())
        }),
    )
}

fn orders(pki: &Pki) -> Issued {
    pki.client("orders", &["uri:spiffe://prod/ns/payments/sa/orders"])
}

#[tokio::test]
async fn an_allowed_client_is_served_and_its_identity_reaches_the_handler() {
    let Files { pki, tls } = files(true);
    let served = Arc::new(AtomicUsize::new(0));
    let running = Running::start(whoami(served.clone()), server(tls)).await;
    let client = TlsClient::new(&pki.ca_pem(), Some(&orders(&pki)));
    let (status, body) = client.get(running.addr, "/").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "spiffe://prod/ns/payments/sa/orders");
    // The negotiated protocol is TLS 1.3 with ALPN http/1.1.
    let stream = client.connect(running.addr).await.unwrap();
    let (_, connection) = stream.get_ref();
    assert_eq!(
        connection.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(connection.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn every_wrong_certificate_fails_in_the_handshake_with_its_reason() {
    let Files { pki, tls } = files(true);
    let served = Arc::new(AtomicUsize::new(0));
    let running = Running::start(whoami(served.clone()), server(tls)).await;
    let other_ca = Pki::new("Some Other CA");
    let cases: [(&str, Option<Issued>); 4] = [
        (
            "san_not_allowed",
            Some(pki.client("billing", &["uri:spiffe://prod/ns/billing/sa/api"])),
        ),
        (
            "expired",
            Some(pki.expired_client("old", &["uri:spiffe://prod/ns/payments/sa/old"])),
        ),
        ("unknown_ca", Some(orders(&other_ca))),
        ("no_client_certificate", None),
    ];
    for (reason, certificate) in cases {
        let before = handshakes(reason);
        let client = TlsClient::new(&pki.ca_pem(), certificate.as_ref());
        let result = client.get(running.addr, "/").await;
        assert!(result.is_err(), "{reason}: served {result:?}");
        // The server counts after its side of the handshake ends.
        let deadline = Instant::now() + Duration::from_secs(5);
        while handshakes(reason) < before + 1.0 {
            assert!(Instant::now() < deadline, "{reason} was not counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(served.load(Ordering::Relaxed), 0, "no request got through");
}

#[tokio::test]
async fn optional_client_auth_serves_clients_without_a_certificate() {
    let Files { pki, mut tls } = files(true);
    tls.client_auth = ClientAuth::Optional;
    let running = Running::start(whoami(Arc::default()), server(tls)).await;
    let anonymous = TlsClient::new(&pki.ca_pem(), None);
    assert_eq!(
        anonymous.get(running.addr, "/").await.unwrap().1,
        "anonymous"
    );
    let named = TlsClient::new(&pki.ca_pem(), Some(&orders(&pki)));
    assert_eq!(
        named.get(running.addr, "/").await.unwrap().1,
        "spiffe://prod/ns/payments/sa/orders"
    );
    // A certificate that is presented is still checked.
    let billing = pki.client("billing", &["uri:spiffe://prod/ns/billing/sa/api"]);
    let refused = TlsClient::new(&pki.ca_pem(), Some(&billing));
    assert!(refused.get(running.addr, "/").await.is_err());
}

#[tokio::test]
async fn a_silent_client_is_cut_at_the_handshake_timeout_while_others_are_served() {
    let Files { pki, mut tls } = files(false);
    // Long enough for this test's own handshake on a busy machine; twenty stalled handshakes
    // served one after another would still take forty seconds.
    tls.handshake_timeout = Duration::from_secs(2);
    let running = Running::start(whoami(Arc::default()), server(tls)).await;
    let before = handshakes("timeout");
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(running.addr).await.unwrap());
    }
    // Twenty stalled handshakes delay nobody.
    let client = TlsClient::new(&pki.ca_pem(), None);
    let started = Instant::now();
    assert_eq!(client.get(running.addr, "/").await.unwrap().0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent[0].read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "cut at the timeout: {read:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while handshakes("timeout") < before + 20.0 {
        assert!(
            Instant::now() < deadline,
            "timeouts counted: {} of 20, closed {}",
            handshakes("timeout") - before,
            handshakes("closed")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reload_swaps_the_certificate_and_keeps_open_connections() {
    let Files { pki, tls } = files(false);
    let running = Running::start(whoami(Arc::default()), server(tls)).await;
    let client = TlsClient::new(&pki.ca_pem(), None).without_resumption();
    let (mut open, first) = client.session(running.addr).await.unwrap();
    assert_eq!(send(&mut open, "/").await.unwrap().0, 200);

    let renewed = pki.server();
    pki.write("server.key", &renewed.key_pem);
    pki.write("server.pem", &renewed.cert_pem);
    let started = Instant::now();
    loop {
        let (_, served) = client.session(running.addr).await.unwrap();
        if served != first {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before still works.
    assert_eq!(send(&mut open, "/").await.unwrap().0, 200);
}

fn reload_errors() -> f64 {
    counter("palisade_tls_reloads_total", &[("outcome", "error")])
}

async fn until_a_reload_fails(before: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while reload_errors() <= before {
        assert!(
            Instant::now() < deadline,
            "the broken files were not noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_broken_reload_keeps_the_previous_certificate() {
    let Files { pki, tls } = files(false);
    let running = Running::start(whoami(Arc::default()), server(tls)).await;
    let client = TlsClient::new(&pki.ca_pem(), None).without_resumption();
    let (_, first) = client.session(running.addr).await.unwrap();
    // A key that does not match the certificate, then a certificate that is not PEM.
    let before = reload_errors();
    pki.write("server.key", &pki.server().key_pem);
    until_a_reload_fails(before).await;
    let (mut session, served) = client.session(running.addr).await.unwrap();
    assert_eq!(served, first, "the mismatched key was not loaded");
    assert_eq!(send(&mut session, "/").await.unwrap().0, 200);
    let before = reload_errors();
    pki.write("server.pem", "not a certificate");
    until_a_reload_fails(before).await;
    let (mut session, served) = client.session(running.addr).await.unwrap();
    assert_eq!(served, first);
    assert_eq!(send(&mut session, "/").await.unwrap().0, 200);
}

#[tokio::test]
async fn tls_1_2_is_refused_unless_enabled() {
    let Files { pki, mut tls } = files(false);
    let tls12 = TlsClient::with_versions(&pki.ca_pem(), None, &[&rustls::version::TLS12]);
    let strict = Running::start(whoami(Arc::default()), server(tls.clone())).await;
    assert!(tls12.get(strict.addr, "/").await.is_err());
    tls.min_version = TlsVersion::Tls12;
    let lenient = Running::start(whoami(Arc::default()), server(tls)).await;
    assert_eq!(tls12.get(lenient.addr, "/").await.unwrap().0, 200);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_refused_in_the_handshake() {
    let Files { tls, pki: _pki } = files(false);
    let running = Running::start(whoami(Arc::default()), server(tls)).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    // The server may answer the garbage with an alert and close before the write ends.
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

#[tokio::test]
async fn header_limits_and_timeouts_hold_over_tls() {
    let Files { pki, tls } = files(false);
    let running = Running::start(whoami(Arc::default()), server(tls)).await;
    let client = TlsClient::new(&pki.ca_pem(), None);
    // 431 for a header block over the limit.
    let mut stream = client.connect(running.addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    stream.write_all(big.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 431"));
    // A slow head after the handshake is cut at the header timeout.
    let mut slow = client.connect(running.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn handshakes_count_against_the_connection_limit() {
    let Files { pki, tls } = files(false);
    let mut server = server(tls);
    server.config_mut().connections.max_connections = 4;
    let running = Running::start(whoami(Arc::default()), server).await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(TcpStream::connect(running.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Four sockets in their handshake hold all four slots: the fifth client is refused.
    let client = TlsClient::new(&pki.ca_pem(), None);
    assert!(client.get(running.addr, "/").await.is_err());
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.get(running.addr, "/").await.is_err() {
        assert!(Instant::now() < deadline, "slots freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_drain_finishes_a_request_in_flight_over_tls() {
    let Files { pki, tls } = files(false);
    let hold = Hold::new();
    let mut running = Running::start(Router::new().route("/", hold.route()), server(tls)).await;
    let client = TlsClient::new(&pki.ca_pem(), None);
    let addr = running.addr;
    let in_flight = tokio::spawn(async move { client.get(addr, "/").await });
    hold.entered(1).await;
    running.shut_down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    hold.release();
    let (status, body) = in_flight.await.unwrap().unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "released"));
    assert_eq!(running.report().await.outcome, DrainOutcome::Drained);
}

#[tokio::test]
async fn rate_limits_can_count_by_client_certificate() {
    use palisade::rate_limit::{KeySource, PolicyConfig, RateLimitLayer};
    let Files { pki, tls } = files(true);
    let limits = RateLimitLayer::builder()
        .policy(
            "per_client",
            PolicyConfig::per_minute(2).key(KeySource::ClientCertificate),
        )
        .build()
        .unwrap();
    let running = Running::start(whoami(Arc::default()).layer(limits), server(tls)).await;
    let orders = TlsClient::new(&pki.ca_pem(), Some(&orders(&pki)));
    let refunds = pki.client("refunds", &["uri:spiffe://prod/ns/payments/sa/refunds"]);
    let refunds = TlsClient::new(&pki.ca_pem(), Some(&refunds));
    let (mut a, _) = orders.session(running.addr).await.unwrap();
    let statuses: Vec<u16> = [
        send(&mut a, "/").await.unwrap().0,
        send(&mut a, "/").await.unwrap().0,
        send(&mut a, "/").await.unwrap().0,
    ]
    .iter()
    .map(http::StatusCode::as_u16)
    .collect();
    assert_eq!(statuses, [200, 200, 429]);
    // Same address, another identity: its own budget, even on a new connection of the first.
    assert_eq!(refunds.get(running.addr, "/").await.unwrap().0, 200);
    assert_eq!(orders.get(running.addr, "/").await.unwrap().0, 429);
}

#[tokio::test]
async fn a_client_ca_reload_ends_resumption_for_clients_it_no_longer_trusts() {
    let Files { pki, tls } = files(true);
    let running = Running::start(whoami(Arc::default()), server(tls)).await;
    let client = TlsClient::new(&pki.ca_pem(), Some(&orders(&pki)));
    assert_eq!(client.get(running.addr, "/").await.unwrap().0, 200);
    // The second connection resumes the first's session: no certificate check at all.
    let resumed = client.connect(running.addr).await.unwrap();
    assert_eq!(
        resumed.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    drop(resumed);
    // The operators replace the client CA: this client's CA is no longer trusted.
    let other = Pki::new("Replacement CA");
    pki.write("clients.pem", &other.ca_pem());
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(running.addr, "/").await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still served: a session from before the reload resumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
