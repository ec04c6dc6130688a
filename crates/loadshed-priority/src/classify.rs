//! Classification: which [`Priority`] a request gets, compiled once from the configuration.

use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, Method, Request, Uri};
use palisade_core::{Cidr, ConfigError, PeerTrust, Priority, RouteLabel, TrustedPeers};

use crate::config::{HeaderTrust, LoadShedConfig, PathMatch, RouteRule};

/// What a custom classifier sees of a request.
#[derive(Debug)]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (`MatchedPath`, `ConnectInfo`, classes other layers assigned).
    pub extensions: &'a Extensions,
}

/// A custom classifier: `Some(class)` to decide, `None` to fall through to the default.
pub type ClassifierFn = Arc<dyn Fn(&RequestInfo<'_>) -> Option<Priority> + Send + Sync>;

/// Header values longer than this are not class names (and are not looked at further).
const MAX_VALUE_LEN: usize = 32;

pub(crate) struct Classifier {
    critical_paths: Box<[PathMatch]>,
    route_rules: Box<[RouteRule]>,
    header: HeaderName,
    values: Box<[([u8; MAX_VALUE_LEN], usize, Priority)]>,
    trust: HeaderTrust,
    peers: TrustedPeers,
    secret: Option<(HeaderName, Box<[u8]>)>,
    custom: Option<ClassifierFn>,
    default: Priority,
}

/// Lowercases and maps `-` to `_` into a fixed buffer; `None` for values too long to be a name.
fn fold(value: &[u8]) -> Option<([u8; MAX_VALUE_LEN], usize)> {
    let value = value.trim_ascii();
    if value.len() > MAX_VALUE_LEN {
        return None;
    }
    let mut buf = [0u8; MAX_VALUE_LEN];
    for (dst, &src) in buf.iter_mut().zip(value) {
        *dst = if src == b'-' {
            b'_'
        } else {
            src.to_ascii_lowercase()
        };
    }
    Some((buf, value.len()))
}

fn header_name(key: &'static str, name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::new(key, format!("{name:?} is not a valid header name")))
}

impl Classifier {
    pub(crate) fn compile(
        config: &LoadShedConfig,
        custom: Option<ClassifierFn>,
    ) -> Result<Self, ConfigError> {
        let header = header_name("header", &config.header)?;
        let mut values = Vec::with_capacity(config.header_values.len());
        for (text, priority) in &config.header_values {
            let (folded, len) = fold(text.as_bytes())
                .filter(|(_, len)| *len > 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        "header_values",
                        format!("{text:?} must be 1 to 32 characters"),
                    )
                })?;
            values.push((folded, len, *priority));
        }
        let ranges = config
            .trusted_peers
            .iter()
            .map(|r| Cidr::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        if config.header_trust == HeaderTrust::TrustedPeers && ranges.is_empty() {
            return Err(ConfigError::new(
                "trusted_peers",
                "header_trust = trusted_peers needs at least one range",
            ));
        }
        let secret = match (&config.shared_secret_header, &config.shared_secret) {
            (Some(name), Some(secret)) if !secret.is_empty() => Some((
                header_name("shared_secret_header", name)?,
                secret.as_bytes().into(),
            )),
            (None, None) => None,
            _ => {
                return Err(ConfigError::new(
                    "shared_secret",
                    "set both shared_secret_header and a non-empty shared_secret, or neither",
                ));
            }
        };
        if config.header_trust == HeaderTrust::SharedSecret && secret.is_none() {
            return Err(ConfigError::new(
                "shared_secret",
                "header_trust = shared_secret needs the secret",
            ));
        }
        for path in config
            .critical_paths
            .iter()
            .chain(config.route_rules.iter().map(|r| &r.matches))
        {
            let text = match path {
                PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::Route(p) => p,
            };
            if !text.starts_with('/') {
                return Err(ConfigError::new(
                    "route_rules",
                    format!("{text:?} must start with '/'"),
                ));
            }
        }
        Ok(Self {
            critical_paths: config.critical_paths.clone().into(),
            route_rules: config.route_rules.clone().into(),
            header,
            values: values.into(),
            trust: config.header_trust,
            peers: TrustedPeers::new(ranges),
            secret,
            custom,
            default: config.default_priority,
        })
    }

    /// The header this layer reads (and propagation writes).
    pub(crate) fn header(&self) -> &HeaderName {
        &self.header
    }

    pub(crate) fn classify<B>(&self, request: &Request<B>) -> Priority {
        let path = request.uri().path();
        if self
            .critical_paths
            .iter()
            .any(|m| matches(m, path, request.extensions()))
        {
            return Priority::CriticalPlus;
        }
        if let Some(rule) = self
            .route_rules
            .iter()
            .find(|r| matches(&r.matches, path, request.extensions()))
        {
            return rule.priority;
        }
        if let Some(priority) = self.header_class(request) {
            return priority;
        }
        if let Some(custom) = &self.custom {
            let info = RequestInfo {
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                extensions: request.extensions(),
            };
            if let Some(priority) = custom(&info) {
                return priority;
            }
        }
        self.default
    }

    /// The class the header asks for, if it is a known value and the caller may have it.
    fn header_class<B>(&self, request: &Request<B>) -> Option<Priority> {
        if self.trust == HeaderTrust::Never {
            return None;
        }
        let mut all = request.headers().get_all(&self.header).iter();
        let value = all.next()?;
        if all.next().is_some() {
            return None; // repeated: ambiguous, so ignored
        }
        let (folded, len) = fold(value.as_bytes())?;
        let claimed = self
            .values
            .iter()
            .find(|(v, l, _)| *l == len && v[..len] == folded[..len])?
            .2;
        if claimed <= self.default || self.may_raise(request) {
            Some(claimed)
        } else {
            None
        }
    }

    fn may_raise<B>(&self, request: &Request<B>) -> bool {
        match self.trust {
            HeaderTrust::Always => true,
            HeaderTrust::Never | HeaderTrust::LowerOnly => false,
            HeaderTrust::TrustedPeers => {
                self.peers.check(request.extensions()) == PeerTrust::Trusted
            }
            HeaderTrust::SharedSecret => self.secret.as_ref().is_some_and(|(name, secret)| {
                request
                    .headers()
                    .get(name)
                    .is_some_and(|v| constant_time_eq(v.as_bytes(), secret))
            }),
        }
    }
}

fn matches(rule: &PathMatch, path: &str, extensions: &Extensions) -> bool {
    match rule {
        PathMatch::Exact(p) => path == p,
        PathMatch::Prefix(p) => path.starts_with(p.as_ref()),
        PathMatch::Route(template) => {
            let route = RouteLabel::from_extensions(extensions);
            route.is_matched() && route.as_str() == template
        }
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// secret was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;

    use super::*;

    fn request(path: &str, priority: Option<&str>) -> Request<()> {
        let mut builder = Request::get(path);
        if let Some(value) = priority {
            builder = builder.header("x-priority", value);
        }
        builder.body(()).unwrap()
    }

    fn classifier(config: &LoadShedConfig) -> Classifier {
        Classifier::compile(config, None).unwrap()
    }

    #[test]
    fn health_paths_are_critical_plus_whatever_the_header_says() {
        let c = classifier(&LoadShedConfig::default());
        assert_eq!(
            c.classify(&request("/health/ready", Some("sheddable"))),
            Priority::CriticalPlus
        );
        assert_eq!(c.classify(&request("/livez", None)), Priority::CriticalPlus);
        assert_eq!(
            c.classify(&request("/healthz", None)),
            Priority::CriticalPlus
        );
        assert_eq!(
            c.classify(&request("/livezz", None)),
            Priority::Critical,
            "exact, not prefix"
        );
    }

    #[test]
    fn order_is_paths_then_rules_then_header_then_closure_then_default() {
        let config = LoadShedConfig {
            route_rules: vec![RouteRule {
                matches: PathMatch::Prefix("/batch/".into()),
                priority: Priority::Sheddable,
            }],
            default_priority: Priority::SheddablePlus,
            header_trust: HeaderTrust::Always,
            ..LoadShedConfig::default()
        };
        let custom: ClassifierFn =
            Arc::new(|info| (info.method == Method::POST).then_some(Priority::Critical));
        let c = Classifier::compile(&config, Some(custom)).unwrap();
        assert_eq!(
            c.classify(&request("/batch/job", Some("critical_plus"))),
            Priority::Sheddable,
            "rule beats header"
        );
        assert_eq!(
            c.classify(&request("/api", Some("critical_plus"))),
            Priority::CriticalPlus,
            "header beats closure"
        );
        let post = Request::post("/api").body(()).unwrap();
        assert_eq!(
            c.classify(&post),
            Priority::Critical,
            "closure beats default"
        );
        assert_eq!(
            c.classify(&request("/api", None)),
            Priority::SheddablePlus,
            "default"
        );
    }

    #[test]
    fn untrusted_clients_may_lower_but_never_raise() {
        let c = classifier(&LoadShedConfig::default());
        assert_eq!(
            c.classify(&request("/", Some("sheddable"))),
            Priority::Sheddable
        );
        assert_eq!(c.classify(&request("/", Some("LOW"))), Priority::Sheddable);
        assert_eq!(
            c.classify(&request("/", Some("critical"))),
            Priority::Critical
        );
        assert_eq!(
            c.classify(&request("/", Some("critical-plus"))),
            Priority::Critical,
            "raise refused"
        );
    }

    #[test]
    fn malformed_repeated_and_unknown_values_fall_back() {
        let c = classifier(&LoadShedConfig {
            header_trust: HeaderTrust::Always,
            ..LoadShedConfig::default()
        });
        for junk in ["", "urgent", "critical plus", &"a".repeat(100)] {
            assert_eq!(
                c.classify(&request("/", Some(junk))),
                Priority::Critical,
                "{junk:?}"
            );
        }
        let mut twice = request("/", Some("sheddable"));
        twice.headers_mut().append(
            "x-priority",
            http::HeaderValue::from_static("critical_plus"),
        );
        assert_eq!(c.classify(&twice), Priority::Critical);
    }

    #[test]
    fn trusted_peers_may_raise() {
        let c = classifier(&LoadShedConfig {
            header_trust: HeaderTrust::TrustedPeers,
            trusted_peers: vec!["10.0.0.0/8".into()],
            ..LoadShedConfig::default()
        });
        let mut inside = request("/", Some("critical_plus"));
        inside
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 1))));
        assert_eq!(c.classify(&inside), Priority::CriticalPlus);
        let mut outside = request("/", Some("critical_plus"));
        outside
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 1))));
        assert_eq!(
            c.classify(&outside),
            Priority::Critical,
            "spoofed header from outside is ignored"
        );
        assert_eq!(
            c.classify(&request("/", Some("critical_plus"))),
            Priority::Critical,
            "no peer: untrusted"
        );
    }

    #[test]
    fn a_shared_secret_allows_raising() {
        let c = classifier(&LoadShedConfig {
            header_trust: HeaderTrust::SharedSecret,
            shared_secret_header: Some("x-priority-auth".into()),
            shared_secret: Some("s3cret".into()),
            ..LoadShedConfig::default()
        });
        let mut with = request("/", Some("critical_plus"));
        with.headers_mut()
            .insert("x-priority-auth", http::HeaderValue::from_static("s3cret"));
        assert_eq!(c.classify(&with), Priority::CriticalPlus);
        let mut wrong = request("/", Some("critical_plus"));
        wrong
            .headers_mut()
            .insert("x-priority-auth", http::HeaderValue::from_static("s3cre"));
        assert_eq!(c.classify(&wrong), Priority::Critical);
    }

    #[test]
    fn never_ignores_the_header() {
        let c = classifier(&LoadShedConfig {
            header_trust: HeaderTrust::Never,
            ..LoadShedConfig::default()
        });
        assert_eq!(
            c.classify(&request("/", Some("sheddable"))),
            Priority::Critical
        );
    }

    #[test]
    fn invalid_configuration_is_an_error() {
        let err = |config: LoadShedConfig| {
            Classifier::compile(&config, None)
                .err()
                .map(|e| e.key().to_owned())
        };
        assert_eq!(
            err(LoadShedConfig {
                header: "bad header".into(),
                ..Default::default()
            })
            .as_deref(),
            Some("header")
        );
        assert_eq!(
            err(LoadShedConfig {
                header_values: vec![("".into(), Priority::Critical)],
                ..Default::default()
            })
            .as_deref(),
            Some("header_values")
        );
        assert_eq!(
            err(LoadShedConfig {
                header_trust: HeaderTrust::TrustedPeers,
                ..Default::default()
            })
            .as_deref(),
            Some("trusted_peers")
        );
        assert_eq!(
            err(LoadShedConfig {
                trusted_peers: vec!["10.0.0.1/8".into()],
                ..Default::default()
            })
            .as_deref(),
            Some("trusted_peers")
        );
        assert_eq!(
            err(LoadShedConfig {
                header_trust: HeaderTrust::SharedSecret,
                ..Default::default()
            })
            .as_deref(),
            Some("shared_secret")
        );
        assert_eq!(
            err(LoadShedConfig {
                shared_secret: Some("x".into()),
                ..Default::default()
            })
            .as_deref(),
            Some("shared_secret")
        );
        assert_eq!(
            err(LoadShedConfig {
                route_rules: vec![RouteRule {
                    matches: PathMatch::Prefix("api".into()),
                    priority: Priority::Sheddable
                }],
                ..Default::default()
            })
            .as_deref(),
            Some("route_rules")
        );
    }
}
