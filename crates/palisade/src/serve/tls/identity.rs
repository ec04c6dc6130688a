//! Reading certificates: a client's SANs and identity, and any certificate's expiry.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime},
};

use palisade_core::{ClientIdentity, SubjectAltName};
use rustls::pki_types::CertificateDer;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName};

fn parse<'a>(cert: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| e.to_string())
}

fn sans_of(cert: &X509Certificate<'_>) -> Result<Vec<SubjectAltName>, String> {
    let Some(extension) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    Ok(extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(SubjectAltName::Dns((*dns).into())),
            GeneralName::URI(uri) => Some(SubjectAltName::Uri((*uri).into())),
            GeneralName::RFC822Name(email) => Some(SubjectAltName::Email((*email).into())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                _ => None,
            }
            .map(SubjectAltName::Ip),
            _ => None,
        })
        .collect())
}

fn not_after_of(cert: &X509Certificate<'_>) -> SystemTime {
    let secs = cert.validity().not_after.timestamp();
    match u64::try_from(secs) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// The SANs of a certificate.
pub(crate) fn sans(cert: &CertificateDer<'_>) -> Result<Vec<SubjectAltName>, String> {
    sans_of(&parse(cert)?)
}

/// The identity of a verified client certificate.
pub(crate) fn client_identity(cert: &CertificateDer<'_>) -> Option<ClientIdentity> {
    let parsed = parse(cert).ok()?;
    Some(ClientIdentity::new(
        sans_of(&parsed).ok()?,
        parsed.subject().to_string(),
        parsed.raw_serial_as_string(),
        not_after_of(&parsed),
    ))
}

/// When a certificate expires (the Unix epoch for one that does not parse, so an alert fires).
pub(crate) fn not_after(cert: &CertificateDer<'_>) -> SystemTime {
    parse(cert).map_or(SystemTime::UNIX_EPOCH, |c| not_after_of(&c))
}
