//! [`TlsConfig`]: `[server.tls]`, plain data compiled with or without the `tls` feature, and
//! the SAN allow-list's entries.

use std::{path::PathBuf, time::Duration};

use palisade_core::{Cidr, ConfigError, SubjectAltName};
use serde::{Deserialize, Deserializer};

/// Whether clients must present a certificate (with `client_ca` set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientAuth {
    /// No certificate, no connection (the default once a client CA is configured).
    #[default]
    Required,
    /// A certificate is verified when presented; clients without one are served too (handlers
    /// tell them apart with `Option<ClientIdentity>`).
    Optional,
}

/// The oldest TLS version accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only (the default).
    #[default]
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    /// `"1.3"`, `"1.2"` (or the numbers 1.3 and 1.2, as environment variables arrive).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(text) => text,
            Raw::Number(n) => format!("{n:.1}"),
        };
        match text
            .trim()
            .trim_start_matches("TLS")
            .trim_start_matches("tls")
        {
            "1.3" => Ok(Self::Tls13),
            "1.2" => Ok(Self::Tls12),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not a TLS version: \"1.3\" or \"1.2\""
            ))),
        }
    }
}

/// `[server.tls]`: serve HTTPS. Off until `cert` is set.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `cert` | none (off) | PEM certificate chain, the server's first (`PALISADE_SERVER__TLS__CERT`) |
/// | `key` | none | PEM private key (PKCS#8, PKCS#1 or SEC1) |
/// | `client_ca` | none | PEM bundle of the CAs that sign client certificates: mutual TLS |
/// | `client_auth` | `required` | with `client_ca`: `required`, or `optional` (verified when presented) |
/// | `allowed_sans` | `[]` (any) | with `client_ca`: the client certificate must carry one of these SANs, checked in the handshake (a list, or one comma-separated string) |
/// | `min_version` | `"1.3"` | `"1.2"` also accepts TLS 1.2 |
/// | `handshake_timeout` | 10 s | a client that has not finished its handshake by then is cut |
/// | `watch_interval` | 0.5 s | how often the files are checked for changes (SIGHUP reloads at once) |
///
/// `allowed_sans` entries each match one kind of SAN: `dns:api.internal` (without case), or
/// `dns:*.internal` for every name under a domain; `uri:spiffe://prod/ns/payments/sa/orders`
/// exactly, or by prefix with a trailing `*` (`uri:spiffe://prod/ns/payments/*`);
/// `ip:10.0.0.0/8` (an address or a CIDR); `email:ops@example.com`. The type is any case; an
/// entry without one is a URI when it contains `://`, else a DNS name. With
/// `client_auth = "optional"` the list applies to clients that present a certificate; clients
/// without one are served anonymously (check `Option<ClientIdentity>` in handlers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain file.
    pub cert: Option<PathBuf>,
    /// The private key file.
    pub key: Option<PathBuf>,
    /// The client CA bundle file (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required.
    pub client_auth: ClientAuth,
    /// SANs a client certificate must carry one of.
    #[serde(deserialize_with = "list_or_commas")]
    pub allowed_sans: Vec<String>,
    /// The oldest version accepted.
    pub min_version: TlsVersion,
    /// The longest a handshake may take.
    #[serde(with = "palisade_core::duration_secs")]
    pub handshake_timeout: Duration,
    /// How often the files are checked for changes.
    #[serde(with = "palisade_core::duration_secs")]
    pub watch_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_ca: None,
            client_auth: ClientAuth::Required,
            allowed_sans: Vec::new(),
            min_version: TlsVersion::Tls13,
            handshake_timeout: Duration::from_secs(10),
            watch_interval: Duration::from_millis(500),
        }
    }
}

fn list_or_commas<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(list) => list,
        Raw::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn set(path: Option<&PathBuf>) -> Option<&PathBuf> {
    path.filter(|p| !p.as_os_str().is_empty())
}

impl TlsConfig {
    /// TLS with the certificate `cert` and the key `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// Whether TLS is on: a certificate is set (an empty path is none, so a deployment can
    /// leave it to an optional secret).
    pub fn is_enabled(&self) -> bool {
        set(self.cert.as_ref()).is_some()
    }

    /// Whether clients are asked for certificates.
    pub fn is_mutual(&self) -> bool {
        set(self.client_ca.as_ref()).is_some()
    }

    /// Checks the settings (files are read when the server starts).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: a certificate without a key, SANs without a client CA,
    /// an allow-list entry that does not parse, or a zero timeout or interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.is_enabled() {
            return Ok(());
        }
        if set(self.key.as_ref()).is_none() {
            return Err(ConfigError::new(
                "key",
                "set the private key file beside cert",
            ));
        }
        if !self.allowed_sans.is_empty() && !self.is_mutual() {
            return Err(ConfigError::new(
                "allowed_sans",
                "needs client_ca: without client certificates there are no SANs to check",
            ));
        }
        for entry in &self.allowed_sans {
            AllowedSan::parse(entry).map_err(|e| ConfigError::new("allowed_sans", e))?;
        }
        if self.handshake_timeout.is_zero() || self.handshake_timeout > Duration::from_secs(300) {
            return Err(ConfigError::new(
                "handshake_timeout",
                "must be above 0 and at most 300 s",
            ));
        }
        if self.watch_interval.is_zero() {
            return Err(ConfigError::new("watch_interval", "must be above 0"));
        }
        Ok(())
    }

    #[cfg(feature = "tls")]
    pub(crate) fn files(&self) -> (Option<&PathBuf>, Option<&PathBuf>, Option<&PathBuf>) {
        (
            set(self.cert.as_ref()),
            set(self.key.as_ref()),
            set(self.client_ca.as_ref()),
        )
    }
}

/// One entry of `allowed_sans`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AllowedSan {
    /// A DNS name, exactly, or every name under a domain (`*.example.com`); without case.
    Dns(DnsPattern),
    /// A URI, exactly or by prefix (a trailing `*`); with case, as SPIFFE IDs compare.
    Uri(UriPattern),
    /// An email address, exactly, without case.
    Email(Box<str>),
    /// An address or a network.
    Ip(Cidr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsPattern {
    Exact(Box<str>),
    /// `.example.com`: the names that end with it (never `example.com` itself).
    Under(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UriPattern {
    text: Box<str>,
    prefix: bool,
}

impl AllowedSan {
    /// `dns:`, `uri:`, `ip:` or `email:` (any case) then the value; without a type, an entry
    /// with `://` is a URI and anything else a DNS name.
    pub(crate) fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let typed = entry.split_once(':').and_then(|(kind, value)| {
            let kind = kind.to_ascii_lowercase();
            ["dns", "uri", "ip", "email"]
                .contains(&kind.as_str())
                .then_some((kind, value))
        });
        let (kind, value) = match typed {
            Some((kind, value)) => (kind, value),
            None if entry.contains("://") => ("uri".to_owned(), entry),
            None => ("dns".to_owned(), entry),
        };
        if value.is_empty() {
            return Err(format!("{entry:?}: an empty value"));
        }
        match kind.as_str() {
            "dns" => {
                let (text, under) = match value.strip_prefix("*.") {
                    Some(domain) => (domain, true),
                    None => (value, false),
                };
                if text.is_empty() || text.contains('*') {
                    return Err(format!(
                        "{entry:?}: a DNS entry is a name, or `*.domain` for every name under it"
                    ));
                }
                let text = text.to_ascii_lowercase().into_boxed_str();
                Ok(Self::Dns(if under {
                    DnsPattern::Under(format!(".{text}").into())
                } else {
                    DnsPattern::Exact(text)
                }))
            }
            "uri" => {
                let (text, prefix) = match value.strip_suffix('*') {
                    Some(text) => (text, true),
                    None => (value, false),
                };
                if text.is_empty() || text.contains('*') {
                    return Err(format!(
                        "{entry:?}: `*` is allowed only at the end of a URI (a prefix)"
                    ));
                }
                Ok(Self::Uri(UriPattern {
                    text: text.into(),
                    prefix,
                }))
            }
            "email" => Ok(Self::Email(value.to_ascii_lowercase().into())),
            _ => Cidr::parse(value)
                .map(Self::Ip)
                .map_err(|e| format!("{entry:?}: {}", e.problem())),
        }
    }

    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn matches(&self, san: &SubjectAltName) -> bool {
        match (self, san) {
            (Self::Dns(DnsPattern::Exact(name)), SubjectAltName::Dns(value)) => {
                value.eq_ignore_ascii_case(name)
            }
            (Self::Dns(DnsPattern::Under(suffix)), SubjectAltName::Dns(value)) => {
                value.len() > suffix.len()
                    && value
                        .get(value.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
            (Self::Uri(pattern), SubjectAltName::Uri(value)) => {
                if pattern.prefix {
                    value.starts_with(&*pattern.text)
                } else {
                    **value == *pattern.text
                }
            }
            (Self::Email(email), SubjectAltName::Email(value)) => value.eq_ignore_ascii_case(email),
            (Self::Ip(cidr), SubjectAltName::Ip(ip)) => cidr.contains(*ip),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entry: &str, san: &SubjectAltName) -> bool {
        AllowedSan::parse(entry).unwrap().matches(san)
    }

    #[test]
    fn entries_match_their_own_kind_only() {
        let spiffe = SubjectAltName::Uri("spiffe://prod/ns/payments/sa/orders".into());
        let dns = SubjectAltName::Dns("Orders.Internal".into());
        let ip = SubjectAltName::Ip("10.1.2.3".parse().unwrap());
        assert!(allows("uri:spiffe://prod/ns/payments/*", &spiffe));
        assert!(
            allows("URI:spiffe://prod/ns/payments/*", &spiffe),
            "types ignore case"
        );
        assert!(
            allows("spiffe://prod/ns/payments/sa/orders", &spiffe),
            "untyped with :// is a URI"
        );
        assert!(
            !allows("uri:spiffe://prod/ns/payments", &spiffe),
            "exact means exact"
        );
        assert!(!allows("uri:spiffe://prod/ns/billing/*", &spiffe));
        assert!(
            !allows("uri:SPIFFE://prod/ns/payments/*", &spiffe),
            "URIs keep their case"
        );
        // A DNS SAN spelled like a URI never matches a URI entry.
        let fake = SubjectAltName::Dns("spiffe://prod/ns/payments/sa/x".into());
        assert!(!allows("spiffe://prod/ns/payments/*", &fake));
        assert!(allows("dns:orders.internal", &dns), "DNS names ignore case");
        assert!(
            allows("orders.internal", &dns),
            "untyped without :// is a DNS name"
        );
        assert!(allows("*.internal", &dns));
        assert!(
            !allows("*.orders.internal", &dns),
            "the domain itself is not under it"
        );
        let attacker = SubjectAltName::Dns("orders.attacker.example".into());
        assert!(!allows("*.internal", &attacker));
        assert!(allows("ip:10.0.0.0/8", &ip));
        assert!(allows("IP:10.1.2.3", &ip));
        assert!(!allows("ip:192.168.0.0/16", &ip));
        assert!(
            !allows("10.1.2.3", &ip),
            "untyped entries are names, not addresses"
        );
    }

    #[test]
    fn bad_entries_and_settings_name_their_key() {
        for entry in [
            "uri:spiffe://*/x",
            "ip:10.0.0.0/99",
            "",
            "dns:orders.*",
            "dns:*",
        ] {
            assert!(AllowedSan::parse(entry).is_err(), "{entry:?}");
        }
        let mut config = TlsConfig::new("cert.pem", "key.pem");
        config.allowed_sans = vec!["dns:a".into()];
        assert_eq!(config.validate().unwrap_err().key(), "allowed_sans");
        config.client_ca = Some("ca.pem".into());
        config.validate().unwrap();
        config.key = None;
        assert_eq!(config.validate().unwrap_err().key(), "key");
        assert!(!TlsConfig::new("", "key.pem").is_enabled());
    }

    #[test]
    fn versions_and_lists_read_from_toml_and_from_the_environment() {
        #[derive(Deserialize)]
        struct Holder {
            tls: TlsConfig,
        }
        let from_file: Holder = toml::from_str(
            "[tls]\nmin_version = \"1.2\"\nallowed_sans = [\"dns:a\", \"uri:b*\"]\n",
        )
        .unwrap();
        assert_eq!(from_file.tls.min_version, TlsVersion::Tls12);
        assert_eq!(from_file.tls.allowed_sans, ["dns:a", "uri:b*"]);
        // Environment variables arrive as a number and a comma-separated string.
        let from_env: Holder =
            toml::from_str("[tls]\nmin_version = 1.3\nallowed_sans = \"dns:a, uri:b*\"\n").unwrap();
        assert_eq!(from_env.tls.min_version, TlsVersion::Tls13);
        assert_eq!(from_env.tls.allowed_sans, ["dns:a", "uri:b*"]);
    }
}
