//! HTTPS for [`serve`](crate::serve): rustls with ring, chosen explicitly (never the process
//! default, so no feature combination can make start-up panic), TLS 1.3 by default, ALPN
//! `http/1.1`; mutual TLS with a SAN allow-list checked in the handshake; certificate, key and
//! client CA reloaded from their files without a restart.
//!
//! Each handshake runs in its connection's own task, bounded by `handshake_timeout`, after the
//! connection limit has counted the socket: a client that connects and sends nothing, or sends
//! garbage, holds one slot for at most the timeout and never delays the accept loop or anyone
//! else's handshake.

mod config;
#[cfg(feature = "tls")]
mod identity;
#[cfg(feature = "tls")]
pub mod metrics;
#[cfg(feature = "tls")]
mod verifier;

pub use config::{ClientAuth, TlsConfig, TlsVersion};

#[cfg(feature = "tls")]
pub(crate) use runtime::Tls;

#[cfg(feature = "tls")]
mod runtime {
    use std::{
        collections::hash_map::DefaultHasher,
        hash::{Hash, Hasher},
        io,
        net::SocketAddr,
        path::Path,
        sync::{Arc, Mutex, PoisonError, RwLock, Weak},
        time::SystemTime,
    };

    use palisade_core::{ClientIdentity, EventLimiter, SECURITY_TARGET};
    use rustls::{
        CertificateError, RootCertStore, ServerConfig,
        crypto::CryptoProvider,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::{
            ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
            WebPkiClientVerifier, danger::ClientCertVerifier,
        },
        sign::CertifiedKey,
    };
    use tokio::{
        io::{AsyncRead, AsyncWrite},
        time::Instant,
    };
    use tokio_rustls::{TlsAcceptor, server::TlsStream};

    use super::{
        config::{AllowedSan, ClientAuth, TlsConfig, TlsVersion},
        identity, metrics,
        verifier::Verifier,
    };

    /// The served certificate, swapped on reload.
    #[derive(Debug)]
    struct Resolver(RwLock<Arc<CertifiedKey>>);

    impl ResolvesServerCert for Resolver {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(
                self.0
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            )
        }
    }

    /// The session cache (resumption), emptied when a reload changes whom the server trusts:
    /// a resumed session skips certificate verification, so a client whose CA was removed
    /// must not resume its way back in.
    #[derive(Debug)]
    struct Sessions(RwLock<Arc<ServerSessionMemoryCache>>);

    /// Sessions kept for resumption (rustls's default).
    const SESSIONS: usize = 256;

    impl Sessions {
        fn current(&self) -> Arc<ServerSessionMemoryCache> {
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        fn clear(&self) {
            *self.0.write().unwrap_or_else(PoisonError::into_inner) =
                ServerSessionMemoryCache::new(SESSIONS);
        }
    }

    impl StoresServerSessions for Sessions {
        fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
            self.current().put(key, value)
        }

        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.current().get(key)
        }

        fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.current().take(key)
        }

        fn can_cache(&self) -> bool {
            true
        }
    }

    /// What the files hold, checked and ready to swap in.
    struct Material {
        key: Arc<CertifiedKey>,
        server_expiry: SystemTime,
        client: Option<(Arc<dyn ClientCertVerifier>, SystemTime)>,
    }

    /// The TLS side of a server: the acceptor and what reloads change under it.
    pub(crate) struct Tls {
        acceptor: TlsAcceptor,
        resolver: Arc<Resolver>,
        verifier: Option<Arc<Verifier>>,
        sessions: Arc<Sessions>,
        config: TlsConfig,
        provider: Arc<CryptoProvider>,
        /// The files' contents at the last load (good or bad), so a broken file is reported once.
        fingerprint: Mutex<u64>,
        events: EventLimiter,
    }

    impl std::fmt::Debug for Tls {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Tls")
                .field("config", &self.config)
                .finish_non_exhaustive()
        }
    }

    fn read(path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in the file", path.display()));
        }
        Ok(certs)
    }

    impl Tls {
        /// Reads the files and builds the acceptor.
        ///
        /// # Errors
        ///
        /// `InvalidInput` naming the file at fault: unreadable, not PEM, a key that does not
        /// match the certificate, a client CA without a usable certificate.
        pub(crate) fn new(config: &TlsConfig) -> io::Result<Arc<Self>> {
            metrics::describe();
            let invalid =
                |e: String| io::Error::new(io::ErrorKind::InvalidInput, format!("server.tls: {e}"));
            // ring, not aws-lc-rs (the default, whose C build needs cmake and minutes on small
            // machines); rustls marks it deprecated for lacking post-quantum key exchange.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let (material, fingerprint) = load(config, &provider).map_err(invalid)?;
            let resolver = Arc::new(Resolver(RwLock::new(material.key.clone())));
            let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version {
                TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
                TlsVersion::Tls13 => &[&rustls::version::TLS13],
            };
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| invalid(e.to_string()))?;
            let allowed: Box<[AllowedSan]> = config
                .allowed_sans
                .iter()
                .map(|entry| {
                    AllowedSan::parse(entry).map_err(|e| invalid(format!("allowed_sans: {e}")))
                })
                .collect::<Result<_, _>>()?;
            let verifier = material.client.as_ref().map(|(inner, _)| {
                Arc::new(Verifier::new(
                    inner.clone(),
                    allowed,
                    config.client_auth == ClientAuth::Required,
                ))
            });
            let mut server = match &verifier {
                Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
                None => builder.with_no_client_auth(),
            }
            .with_cert_resolver(resolver.clone());
            server.alpn_protocols = vec![b"http/1.1".to_vec()];
            let sessions = Arc::new(Sessions(RwLock::new(ServerSessionMemoryCache::new(
                SESSIONS,
            ))));
            server.session_storage = sessions.clone();
            let tls = Self {
                acceptor: TlsAcceptor::from(Arc::new(server)),
                resolver,
                verifier,
                sessions,
                config: config.clone(),
                provider,
                fingerprint: Mutex::new(fingerprint),
                events: EventLimiter::default(),
            };
            Self::publish(&material);
            Ok(Arc::new(tls))
        }

        fn publish(material: &Material) {
            metrics::expiry("server", material.server_expiry);
            if let Some((_, expiry)) = material.client {
                metrics::expiry("client_ca", expiry);
            }
        }

        /// Reads the files again; swaps in what changed if it is all good, else keeps what is
        /// served and says so once per broken version of the files. `forced` (SIGHUP) reloads
        /// even when the contents look the same.
        pub(crate) fn reload(&self, forced: bool) {
            let Ok(current) = fingerprint(&self.config) else {
                // A file is missing mid-swap (or gone): keep serving, look again next time.
                return;
            };
            {
                let mut last = self
                    .fingerprint
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if *last == current && !forced {
                    return;
                }
                *last = current;
            }
            match load(&self.config, &self.provider) {
                Ok((material, _)) => {
                    *self
                        .resolver
                        .0
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = material.key.clone();
                    if let (Some(verifier), Some((inner, _))) = (&self.verifier, &material.client) {
                        verifier.replace(inner.clone());
                        self.sessions.clear();
                    }
                    Self::publish(&material);
                    metrics::reload(true);
                    tracing::info!("TLS certificate, key and client CA reloaded");
                }
                Err(error) => {
                    metrics::reload(false);
                    tracing::error!(%error, "TLS files changed but cannot be used; still serving the previous ones");
                }
            }
        }

        /// Watches the files (every `watch_interval`, and at once on SIGHUP) while the server
        /// runs; the task ends when the server drops its `Tls`.
        pub(crate) fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
            let weak: Weak<Self> = Arc::downgrade(self);
            let interval = self.config.watch_interval;
            // Registered before the server accepts: from then on SIGHUP reloads, never kills.
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            tokio::spawn(async move {
                // The files were read a moment ago: the first look is one interval away, so a
                // change is picked up by the clock or the signal, never by a start-up race.
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let forced = tokio::select! {
                        _ = tick.tick() => false,
                        Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                    };
                    let Some(tls) = weak.upgrade() else { return };
                    // Reading files blocks: off the runtime's worker threads.
                    let _ = tokio::task::spawn_blocking(move || tls.reload(forced)).await;
                }
            })
        }

        /// The handshake, under its timeout: the stream and the client's identity, or `None`
        /// (counted and, for a refused certificate, logged as a security event).
        pub(crate) async fn handshake<IO>(
            &self,
            io: IO,
            remote: SocketAddr,
        ) -> Option<(TlsStream<IO>, Option<ClientIdentity>)>
        where
            IO: AsyncRead + AsyncWrite + Unpin,
        {
            let started = Instant::now();
            let result =
                tokio::time::timeout(self.config.handshake_timeout, self.acceptor.accept(io)).await;
            let reason = match &result {
                Ok(Ok(_)) => "ok",
                Ok(Err(error)) => reason(error),
                Err(_) => "timeout",
            };
            metrics::handshake(reason, started.elapsed());
            if let Ok(Ok(stream)) = result {
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(<[_]>::first)
                    .and_then(identity::client_identity);
                Some((stream, identity))
            } else {
                let refused = matches!(
                    reason,
                    "san_not_allowed"
                        | "unknown_ca"
                        | "expired"
                        | "bad_certificate"
                        | "no_client_certificate"
                );
                if refused && let Some(suppressed) = self.events.admit() {
                    tracing::info!(
                        target: SECURITY_TARGET,
                        event = "tls_client_refused",
                        reason,
                        client = %remote.ip(),
                        suppressed,
                        "TLS handshake refused: client certificate"
                    );
                } else {
                    tracing::debug!(reason, %remote, "TLS handshake failed");
                }
                None
            }
        }
    }

    /// Why a handshake failed, from the fixed set the metric uses.
    fn reason(error: &io::Error) -> &'static str {
        let tls = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::NoCertificatesPresented) => "no_client_certificate",
            Some(rustls::Error::InvalidCertificate(e)) => match e {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => "unknown_ca",
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
                CertificateError::ApplicationVerificationFailure => "san_not_allowed",
                _ => "bad_certificate",
            },
            Some(_) => "protocol",
            None => match error.kind() {
                io::ErrorKind::InvalidData => "protocol",
                _ => "closed",
            },
        }
    }

    fn fingerprint(config: &TlsConfig) -> Result<u64, String> {
        let (cert, key, ca) = config.files();
        let mut hasher = DefaultHasher::new();
        for path in [cert, key, ca].into_iter().flatten() {
            read(path)?.hash(&mut hasher);
        }
        Ok(hasher.finish())
    }

    fn load(config: &TlsConfig, provider: &Arc<CryptoProvider>) -> Result<(Material, u64), String> {
        let fingerprint = fingerprint(config)?;
        let (Some(cert_path), Some(key_path), ca_path) = config.files() else {
            return Err("cert and key are required".into());
        };
        let chain = certificates(&read(cert_path)?, cert_path)?;
        let server_expiry = identity::not_after(&chain[0]);
        let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
        let key = CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| format!("{} and {}: {e}", cert_path.display(), key_path.display()))?;
        let client = match ca_path {
            None => None,
            Some(path) => {
                let cas = certificates(&read(path)?, path)?;
                let expiry = cas
                    .iter()
                    .map(identity::not_after)
                    .min()
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let mut roots = RootCertStore::empty();
                for ca in cas {
                    roots
                        .add(ca)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                let mut builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if config.client_auth == ClientAuth::Optional {
                    builder = builder.allow_unauthenticated();
                }
                let verifier = builder
                    .build()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Some((verifier, expiry))
            }
        };
        Ok((
            Material {
                key: Arc::new(key),
                server_expiry,
                client,
            },
            fingerprint,
        ))
    }
}
