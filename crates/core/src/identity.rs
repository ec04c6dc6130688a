//! [`ClientIdentity`]: who a mutual-TLS client proved to be, as a request extension and an axum
//! extractor. Written by `palisade::serve` after a verified handshake; read by handlers, rate
//! limits (as a key) and the telemetry layer (`tls.client.subject`, when asked to record it).

use std::{convert::Infallible, fmt, net::IpAddr, sync::Arc, time::SystemTime};

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};

/// One subject alternative name of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectAltName {
    /// A DNS name (`dNSName`).
    Dns(Box<str>),
    /// A URI (`uniformResourceIdentifier`), such as a SPIFFE ID `spiffe://trust-domain/path`.
    Uri(Box<str>),
    /// An IP address (`iPAddress`).
    Ip(IpAddr),
    /// An email address (`rfc822Name`).
    Email(Box<str>),
}

impl fmt::Display for SubjectAltName {
    /// `dns:name`, `uri:spiffe://...`, `ip:10.0.0.1`, `email:a@b`: the forms an allow-list
    /// entry is written in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "dns:{name}"),
            Self::Uri(uri) => write!(f, "uri:{uri}"),
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Email(email) => write!(f, "email:{email}"),
        }
    }
}

/// The verified identity of a mutual-TLS client: its certificate's SANs, subject, serial number
/// and expiry. Present on every request of a connection whose client presented a certificate
/// that the server verified (chain to the configured CA, SAN on the allow-list).
///
/// As an extractor it answers `401 Unauthorized` when the request came without a client
/// certificate (`client_auth = "optional"`, or plain TCP); use `Option<ClientIdentity>` to
/// serve both.
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade_core::ClientIdentity;
///
/// async fn whoami(identity: ClientIdentity) -> String {
///     format!("{} ({})", identity.subject(), identity.sans().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "))
/// }
/// let app: Router = Router::new().route("/whoami", get(whoami));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity(Arc<Inner>);

#[derive(PartialEq, Eq)]
struct Inner {
    sans: Vec<SubjectAltName>,
    subject: Box<str>,
    serial: Box<str>,
    not_after: SystemTime,
}

impl ClientIdentity {
    /// An identity (built by the server after verifying a certificate; tests build their own).
    pub fn new(
        sans: Vec<SubjectAltName>,
        subject: impl Into<Box<str>>,
        serial: impl Into<Box<str>>,
        not_after: SystemTime,
    ) -> Self {
        Self(Arc::new(Inner {
            sans,
            subject: subject.into(),
            serial: serial.into(),
            not_after,
        }))
    }

    /// The subject alternative names, in certificate order.
    pub fn sans(&self) -> &[SubjectAltName] {
        &self.0.sans
    }

    /// The subject distinguished name, RFC 4514 style (`CN=orders,O=Example`).
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The serial number, hexadecimal with colons (`01:a3:...`).
    pub fn serial(&self) -> &str {
        &self.0.serial
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.0.not_after
    }

    /// The first URI SAN (a SPIFFE ID), else the first DNS name, else the subject: a stable
    /// name for the client, for a rate-limit key or a log line.
    pub fn name(&self) -> &str {
        let uri = self.sans().iter().find_map(|s| match s {
            SubjectAltName::Uri(uri) => Some(&**uri),
            _ => None,
        });
        let dns = || {
            self.sans().iter().find_map(|s| match s {
                SubjectAltName::Dns(name) => Some(&**name),
                _ => None,
            })
        };
        uri.or_else(dns).unwrap_or(self.subject())
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.subject())
            .field("sans", &self.sans())
            .field("serial", &self.serial())
            .finish_non_exhaustive()
    }
}

/// The rejection of the [`ClientIdentity`] extractor: the request came without a verified
/// client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingClientIdentity;

impl fmt::Display for MissingClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this route needs a client certificate")
    }
}

impl std::error::Error for MissingClientIdentity {}

impl IntoResponse for MissingClientIdentity {
    fn into_response(self) -> Response {
        (StatusCode::UNAUTHORIZED, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIdentity {
    type Rejection = MissingClientIdentity;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientIdentity>()
            .cloned()
            .ok_or(MissingClientIdentity)
    }
}

/// `Option<ClientIdentity>`: the identity when the client presented a certificate.
impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientIdentity {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ClientIdentity>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(sans: Vec<SubjectAltName>) -> ClientIdentity {
        ClientIdentity::new(sans, "CN=orders", "01:02", SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn the_name_prefers_a_uri_then_a_dns_name_then_the_subject() {
        let uri = SubjectAltName::Uri("spiffe://prod/orders".into());
        let dns = SubjectAltName::Dns("orders.internal".into());
        assert_eq!(
            identity(vec![dns.clone(), uri]).name(),
            "spiffe://prod/orders"
        );
        assert_eq!(identity(vec![dns]).name(), "orders.internal");
        assert_eq!(identity(vec![]).name(), "CN=orders");
    }

    #[tokio::test]
    async fn the_extractor_answers_401_without_an_identity() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let missing = <ClientIdentity as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(missing.into_response().status(), StatusCode::UNAUTHORIZED);
        parts.extensions.insert(identity(vec![]));
        let found = <ClientIdentity as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(found.subject(), "CN=orders");
    }
}
