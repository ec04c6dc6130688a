//! The client-certificate verifier: rustls's `WebPKI` verifier for the chain, then the SAN
//! allow-list, both inside the handshake, so a certificate from the right CA with the wrong
//! identity never gets a request through. The `WebPKI` verifier is swapped when the client CA
//! file changes.

use std::sync::{Arc, PoisonError, RwLock};

use palisade_core::SubjectAltName;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

use super::{config::AllowedSan, identity};

pub(crate) struct Verifier {
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    allowed: Box<[AllowedSan]>,
    mandatory: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("allowed", &self.allowed)
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        allowed: Box<[AllowedSan]>,
        mandatory: bool,
    ) -> Self {
        Self {
            inner: RwLock::new(inner),
            allowed,
            mandatory,
        }
    }

    pub(crate) fn replace(&self, inner: Arc<dyn ClientCertVerifier>) {
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = inner;
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn allows(&self, sans: &[SubjectAltName]) -> bool {
        self.allowed.is_empty()
            || sans
                .iter()
                .any(|san| self.allowed.iter().any(|entry| entry.matches(san)))
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: the CA can change at runtime, and clients pick their certificate anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .current()
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = identity::sans(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.allows(&sans) {
            Ok(verified)
        } else {
            // Only this check answers `ApplicationVerificationFailure`: the handshake metric
            // reads it as `san_not_allowed`.
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}
