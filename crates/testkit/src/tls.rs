//! Certificates made in the test ([`Pki`]: a CA, a server certificate for `localhost` and
//! 127.0.0.1, client certificates with any SANs, expired ones) written to a directory of their
//! own, and a real TLS client ([`TlsClient`]: rustls with ring, optionally presenting a client
//! certificate) that sends HTTP/1.1 requests.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    date_time_ymd,
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// A certificate and its key, as PEM text.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// A test CA in a temporary directory, removed when dropped.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// `dns:x`, `uri:x`, `ip:x`, `email:x` as an rcgen SAN.
fn san(text: &str) -> SanType {
    let (kind, value) = text.split_once(':').expect("kind:value");
    let ia5 = || value.try_into().expect("an IA5 string");
    match kind {
        "dns" => SanType::DnsName(ia5()),
        "uri" => SanType::URI(ia5()),
        "email" => SanType::Rfc822Name(ia5()),
        "ip" => SanType::IpAddress(value.parse().expect("an address")),
        other => panic!("unknown SAN kind {other}"),
    }
}

impl Pki {
    /// A fresh CA named `name`.
    ///
    /// # Panics
    ///
    /// When the directory cannot be created or rcgen fails (neither happens on a working
    /// machine).
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("a CA");
        let dir = std::env::temp_dir().join(format!(
            "palisade-pki-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("a directory");
        Self { ca, dir }
    }

    /// The CA certificate.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The directory the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn issue(&self, cn: &str, sans: &[&str], expired: bool) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect();
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.ca).expect("a certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Issued {
        self.issue("localhost", &["dns:localhost", "ip:127.0.0.1"], false)
    }

    /// A client certificate with these SANs (`uri:spiffe://...`, `dns:...`, `ip:...`).
    pub fn client(&self, cn: &str, sans: &[&str]) -> Issued {
        self.issue(cn, sans, false)
    }

    /// A client certificate that expired in 2021.
    pub fn expired_client(&self, cn: &str, sans: &[&str]) -> Issued {
        self.issue(cn, sans, true)
    }

    /// Writes `contents` to `name` in the directory (atomically: a new file renamed over the
    /// old, as a Kubernetes secret update swaps a symlink) and returns its path.
    ///
    /// # Panics
    ///
    /// When the file cannot be written.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        let staged = self.dir.join(format!(".{name}.new"));
        std::fs::write(&staged, contents).expect("write");
        std::fs::rename(&staged, &path).expect("rename");
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A TLS 1.3/1.2 client trusting one CA, optionally presenting a client certificate.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// Trusts `ca_pem`; presents `client` when given.
    ///
    /// # Panics
    ///
    /// On PEM that does not parse (the test's own certificates).
    pub fn new(ca_pem: &str, client: Option<&Issued>) -> Self {
        Self::with_versions(ca_pem, client, rustls::DEFAULT_VERSIONS)
    }

    /// [`TlsClient::new`] offering only these protocol versions.
    ///
    /// # Panics
    ///
    /// As [`TlsClient::new`].
    pub fn with_versions(
        ca_pem: &str,
        client: Option<&Issued>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Self {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("a CA");
        }
        #[allow(deprecated)] // ring, as the server uses
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match client {
            Some(issued) => {
                let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert PEM");
                let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::from_config(config)
    }

    fn from_config(config: ClientConfig) -> Self {
        let config = Arc::new(config);
        Self {
            connector: TlsConnector::from(Arc::clone(&config)),
            config,
        }
    }

    /// The same client with session resumption off: every connection is a full handshake, so
    /// the certificate it reports is the one the server serves now, never one remembered from
    /// a session resumed from before a reload.
    #[must_use]
    pub fn without_resumption(&self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Self::from_config(config)
    }

    /// Connects and completes the handshake with `localhost` as the server name.
    ///
    /// # Errors
    ///
    /// The connection's or the handshake's error.
    ///
    /// # Panics
    ///
    /// Never: `localhost` is a valid server name.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("a name");
        self.connector.connect(name, tcp).await
    }

    /// Connects and returns an HTTP/1.1 sender on the connection (keep-alive) and the server
    /// certificate it saw.
    ///
    /// # Errors
    ///
    /// As [`TlsClient::connect`], or hyper's handshake error as text.
    pub async fn session(
        &self,
        addr: SocketAddr,
    ) -> Result<(SendRequest<Empty<Bytes>>, CertificateDer<'static>), String> {
        let stream = self.connect(addr).await.map_err(|e| e.to_string())?;
        let served = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .cloned()
            .ok_or("no server certificate")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok((sender, served))
    }

    /// One request on a new connection: the status and body, or the error as text (a refused
    /// handshake shows here; TLS 1.3 clients may only see the refusal at the first read).
    ///
    /// # Errors
    ///
    /// The connection, handshake or request error as text.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<(StatusCode, String), String> {
        let (mut sender, _) = self.session(addr).await?;
        send(&mut sender, path).await
    }
}

/// Sends `GET path` on an open connection.
///
/// # Errors
///
/// The request's error as text.
pub async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> Result<(StatusCode, String), String> {
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
