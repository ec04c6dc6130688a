//! The real binary serving mutual TLS from `PALISADE_SERVER__TLS__*`, as the README shows:
//! a client with an allowed SAN gets its identity back, one with another SAN is refused in the
//! handshake, and the operations port stays plain HTTP for the kubelet and the scraper.

use std::net::SocketAddr;

use palisade_testkit::{
    Client,
    tls::{Pki, TlsClient},
};
use support::start_binary_with_ops_and;

mod support;

#[tokio::test]
async fn the_example_serves_mutual_tls_from_the_environment() {
    let pki = Pki::new("Example CA");
    let server = pki.server();
    let cert = pki.write("tls.crt", &server.cert_pem);
    let key = pki.write("tls.key", &server.key_pem);
    let ca = pki.write("ca.crt", &pki.ca_pem());
    let (cert, key, ca) = (
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string(),
    );
    let env = [
        ("PALISADE_SERVER__TLS__CERT", cert.as_str()),
        ("PALISADE_SERVER__TLS__KEY", key.as_str()),
        ("PALISADE_SERVER__TLS__CLIENT_CA", ca.as_str()),
        (
            "PALISADE_SERVER__TLS__ALLOWED_SANS",
            "uri:spiffe://prod/ns/shop/*, dns:ops.internal",
        ),
    ];
    let (_child, base, ops, _logs) = start_binary_with_ops_and(&env).await;
    let addr: SocketAddr = base
        .strip_prefix("https://")
        .expect("an https:// address")
        .parse()
        .unwrap();

    let frontend = pki.client("frontend", &["uri:spiffe://prod/ns/shop/sa/frontend"]);
    let (status, body) = TlsClient::new(&pki.ca_pem(), Some(&frontend))
        .get(addr, "/api/whoami")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let identity: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(identity["name"], "spiffe://prod/ns/shop/sa/frontend");
    assert_eq!(identity["subject"], "CN=frontend");

    let stranger = pki.client("stranger", &["uri:spiffe://prod/ns/other/sa/x"]);
    assert!(
        TlsClient::new(&pki.ca_pem(), Some(&stranger))
            .get(addr, "/api/whoami")
            .await
            .is_err()
    );
    // Probes and metrics: plain HTTP on the operations port, with the TLS metrics.
    let client = Client::new();
    assert_eq!(client.get(&format!("{ops}/health/ready")).await.status, 200);
    let metrics = client.get(&format!("{ops}/metrics")).await.text();
    assert!(
        metrics.contains("palisade_tls_handshakes_total"),
        "{metrics}"
    );
    assert!(metrics.contains("palisade_tls_certificate_expiry_seconds{cert=\"server\"}"));
}

#[tokio::test]
async fn sighup_reloads_a_renewed_certificate_at_once() {
    let pki = Pki::new("Example CA");
    let first = pki.server();
    let cert = pki.write("tls.crt", &first.cert_pem);
    let key = pki.write("tls.key", &first.key_pem);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    // The files are not watched for an hour: only the signal can reload them.
    let env = [
        ("PALISADE_SERVER__TLS__CERT", cert.as_str()),
        ("PALISADE_SERVER__TLS__KEY", key.as_str()),
        ("PALISADE_SERVER__TLS__WATCH_INTERVAL", "3600"),
    ];
    let (child, base, _ops, _logs) = start_binary_with_ops_and(&env).await;
    let addr: SocketAddr = base.strip_prefix("https://").unwrap().parse().unwrap();
    let client = TlsClient::new(&pki.ca_pem(), None).without_resumption();
    let (mut open, served) = client.session(addr).await.unwrap();

    let renewed = pki.server();
    pki.write("tls.key", &renewed.key_pem);
    pki.write("tls.crt", &renewed.cert_pem);
    // The first look at the files is an hour away: only the signal reloads them.
    assert_eq!(client.session(addr).await.unwrap().1, served);
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while client.session(addr).await.unwrap().1 == served {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The connection opened before the reload still serves.
    assert_eq!(
        palisade_testkit::tls::send(&mut open, "/").await.unwrap().0,
        200
    );
}
