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
