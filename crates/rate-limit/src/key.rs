//! What a policy counts requests by: [`Key`], the built-in [`KeySource`]s, the [`RateLimitKey`]
//! request extension for authenticated users, and the [`KeyExtractor`] trait for everything else.

use std::{
    cell::Cell,
    fmt,
    hash::{Hash, Hasher},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use axum::extract::MatchedPath;
use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderName, Method, Uri};

use crate::client_ip::ClientIpResolver;

/// The identity a policy counts requests by: a client address, an API key, a user id, a route.
///
/// Cheap to clone: addresses are stored inline, text is reference-counted ([`Bytes`]), so
/// keys taken from headers or routes cost no copy.
///
/// ```
/// use palisade_rate_limit::Key;
///
/// assert_eq!(Key::from("user-42").to_string(), "user-42");
/// assert_eq!(Key::ip("192.0.2.7".parse().unwrap()).to_string(), "192.0.2.7");
/// assert_eq!(Key::from("a"), Key::from(String::from("a")));
/// ```
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Global,
    Ip(IpAddr),
    Text(Bytes),
    Route(MatchedPath),
}

impl Key {
    /// The one key shared by every request: a global limit.
    pub const fn global() -> Self {
        Self(Repr::Global)
    }

    /// A client address. IPv4-mapped IPv6 addresses are stored as IPv4.
    pub fn ip(ip: IpAddr) -> Self {
        Self(Repr::Ip(ip.to_canonical()))
    }

    /// A key from static text, without allocating.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Repr::Text(Bytes::from_static(text.as_bytes())))
    }

    /// The key's bytes as a backend stores them: the text of text keys, the address in its
    /// usual notation, `global` for the global key.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Global => Bytes::from_static(b"global"),
            Repr::Ip(ip) => Bytes::from(ip.to_string()),
            Repr::Text(bytes) => bytes.clone(),
            Repr::Route(path) => Bytes::copy_from_slice(path.as_str().as_bytes()),
        }
    }

    fn parts(&self) -> (u8, KeyBytes<'_>) {
        match &self.0 {
            Repr::Global => (0, KeyBytes::Slice(&[])),
            Repr::Ip(IpAddr::V4(v4)) => (1, KeyBytes::V4(v4.octets())),
            Repr::Ip(IpAddr::V6(v6)) => (2, KeyBytes::V6(v6.octets())),
            // Routes and text are one kind: a `route` key and a text key equal to the template
            // are the same identity.
            Repr::Text(bytes) => (3, KeyBytes::Slice(bytes)),
            Repr::Route(path) => (3, KeyBytes::Slice(path.as_str().as_bytes())),
        }
    }
}

enum KeyBytes<'a> {
    Slice(&'a [u8]),
    V4([u8; 4]),
    V6([u8; 16]),
}

impl KeyBytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Slice(s) => s,
            Self::V4(b) => b,
            Self::V6(b) => b,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.parts(), other.parts());
        a.0 == b.0 && a.1.as_slice() == b.1.as_slice()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Addresses are hashed as integers (one word, or two for IPv6) with the kind folded into
        // the same word: the client-IP key is hashed on every request, and integer writes cost
        // a fraction of a byte-slice write. Equal keys still hash equally: the kind tags differ
        // between IPv4, IPv6 and text, and text is hashed by its bytes.
        match &self.0 {
            Repr::Ip(IpAddr::V4(v4)) => state.write_u64(ipv4_word(*v4)),
            Repr::Ip(IpAddr::V6(v6)) => {
                state.write_u8(2);
                state.write_u128(v6.to_bits());
            }
            _ => {
                let (tag, bytes) = self.parts();
                state.write_u8(tag);
                state.write(bytes.as_slice());
            }
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Global => f.write_str("global"),
            Repr::Ip(ip) => write!(f, "{ip}"),
            Repr::Text(bytes) => f.write_str(&String::from_utf8_lossy(bytes)),
            Repr::Route(path) => f.write_str(path.as_str()),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl From<&'static str> for Key {
    fn from(text: &'static str) -> Self {
        Self::from_static(text)
    }
}

impl From<String> for Key {
    fn from(text: String) -> Self {
        Self(Repr::Text(Bytes::from(text)))
    }
}

impl From<Bytes> for Key {
    fn from(bytes: Bytes) -> Self {
        Self(Repr::Text(bytes))
    }
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Self {
        Self::ip(ip)
    }
}

impl From<MatchedPath> for Key {
    fn from(path: MatchedPath) -> Self {
        Self(Repr::Route(path))
    }
}

/// The authenticated identity of a request, for policies keyed by [`KeySource::User`].
///
/// An authentication layer or middleware inserts it into the request extensions; requests
/// without it are not counted by user policies (pair them with a client-IP policy for anonymous
/// traffic).
///
/// ```
/// use palisade_rate_limit::RateLimitKey;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(RateLimitKey::new("user-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitKey(pub Key);

impl RateLimitKey {
    /// The identity `key`.
    pub fn new(key: impl Into<Key>) -> Self {
        Self(key.into())
    }
}

/// Where a policy takes its key from; the configuration form of a [`KeyExtractor`].
///
/// In a configuration file: `key = "client_ip"`, `key = "user"`, `key = "route"`,
/// `key = "global"`, `key = "client_certificate"` or `key = { header = "x-api-key" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum KeySource {
    /// The client address (the default): the TCP peer, or the forwarded address when the peer is
    /// a trusted proxy (see [`ClientIpResolver`]); IPv6 clients grouped by prefix.
    #[default]
    ClientIp,
    /// The value of a request header, such as an API key. Requests without it are not counted by
    /// this policy.
    Header(String),
    /// The [`RateLimitKey`] request extension set by authentication. Requests without it are not
    /// counted by this policy.
    User,
    /// The route template (axum `MatchedPath`): one budget per route, shared by all clients.
    Route,
    /// One budget shared by every request.
    Global,
    /// The verified mutual-TLS client ([`ClientIdentity`](palisade_core::ClientIdentity), set by
    /// `palisade::serve`): its first URI SAN (a SPIFFE ID), else DNS name, else subject. Requests
    /// without a client certificate are not counted by this policy.
    ClientCertificate,
}

/// The client address of one request, resolved at most once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Lookup {
    /// Nobody asked yet.
    #[default]
    Pending,
    /// The answer (`None`: the server gives no peer address).
    Done(Option<IpAddr>),
}

/// What a key extractor sees of a request: the head, plus the client address resolved the same
/// way as for client-IP policies.
pub struct RequestInfo<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
    resolver: &'a ClientIpResolver,
    client_ip: &'a Cell<Lookup>,
}

impl<'a> RequestInfo<'a> {
    pub(crate) fn new<B>(
        request: &'a http::Request<B>,
        resolver: &'a ClientIpResolver,
        client_ip: &'a Cell<Lookup>,
    ) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
            resolver,
            client_ip,
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        self.method
    }

    /// The request target.
    pub fn uri(&self) -> &Uri {
        self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The request extensions (authentication results, `MatchedPath`, `ConnectInfo`).
    pub fn extensions(&self) -> &Extensions {
        self.extensions
    }

    /// The client address as the layer resolves it (computed once per request), or `None` when
    /// the server gives no peer address (`ConnectInfo` missing).
    pub fn client_ip(&self) -> Option<IpAddr> {
        if let Lookup::Done(ip) = self.client_ip.get() {
            return ip;
        }
        let ip = self.resolver.resolve(self.headers, self.extensions);
        self.client_ip.set(Lookup::Done(ip));
        ip
    }
}

impl fmt::Debug for RequestInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestInfo")
            .field("method", self.method)
            .field("uri", self.uri)
            .finish_non_exhaustive()
    }
}

/// Computes a policy's key for a request; `None` means the policy does not count this request.
///
/// Implemented for every `Fn(&RequestInfo<'_>) -> Option<Key>` closure, the tower-http idiom.
///
/// ```
/// use palisade_rate_limit::{Key, KeyExtractor, RequestInfo};
///
/// // Per tenant, from a header, but only on write methods.
/// let by_tenant = |request: &RequestInfo<'_>| {
///     if request.method() == http::Method::GET {
///         return None;
///     }
///     let tenant = request.headers().get("x-tenant")?;
///     Some(Key::from(bytes::Bytes::copy_from_slice(tenant.as_bytes())))
/// };
/// # let _ = &by_tenant as &dyn KeyExtractor;
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of `request`, or `None` to leave it uncounted.
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestInfo<'_>) -> Option<Key> + Send + Sync + 'static,
{
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        self(request)
    }
}

/// A compiled key source.
#[derive(Clone)]
pub(crate) enum Extractor {
    ClientIp,
    Header(HeaderName),
    User,
    Route,
    Global,
    ClientCertificate,
    Custom(Arc<dyn KeyExtractor>),
}

/// The key of requests whose client address is unknown (the server was started without
/// `ConnectInfo`): they share one budget, so the mistake shows as early 429s, never as no limit.
pub(crate) const UNKNOWN_CLIENT: Key = Key::from_static("unknown-client");

impl Extractor {
    pub(crate) fn extract(&self, request: &RequestInfo<'_>, ipv6_prefix: u8) -> Option<Key> {
        match self {
            Self::ClientIp => Some(
                request
                    .client_ip()
                    .map_or(UNKNOWN_CLIENT, |ip| Key::ip(group_ipv6(ip, ipv6_prefix))),
            ),
            Self::Header(name) => {
                let value = request.headers().get(name)?;
                if value.is_empty() {
                    return None;
                }
                // `HeaderValue` does not share its buffer; the copy is the key's one allocation.
                Some(Key::from(Bytes::copy_from_slice(value.as_bytes())))
            }
            Self::User => request
                .extensions()
                .get::<RateLimitKey>()
                .map(|k| k.0.clone()),
            Self::Route => request
                .extensions()
                .get::<MatchedPath>()
                .cloned()
                .map(Key::from),
            Self::Global => Some(Key::global()),
            Self::ClientCertificate => request
                .extensions()
                .get::<palisade_core::ClientIdentity>()
                .map(|identity| Key::from(identity.name().to_owned())),
            Self::Custom(extractor) => extractor.extract(request),
        }
    }

    pub(crate) fn is_client_ip(&self) -> bool {
        matches!(self, Self::ClientIp)
    }
}

/// What an IPv4 key hashes as: the address with the kind tag (1) above it.
#[inline]
pub(crate) fn ipv4_word(v4: Ipv4Addr) -> u64 {
    (1 << 32) | u64::from(v4.to_bits())
}

/// One key per IPv6 prefix: a single host gets a /64 (or more) from its provider, so per-address
/// keys would give it billions of budgets.
pub(crate) fn group_ipv6(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if prefix < 128 => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_grouped_by_prefix_and_ipv4_is_not() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            group_ipv6(ip("2001:db8:1:2:3:4:5:6"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            group_ipv6(ip("2001:db8:1:2:3:4:5:6"), 48),
            ip("2001:db8:1::")
        );
        assert_eq!(group_ipv6(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(group_ipv6(ip("192.0.2.1"), 64), ip("192.0.2.1"));
        assert_eq!(group_ipv6(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
    }

    #[test]
    fn keys_compare_and_hash_by_content() {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        let a = Key::from("/items/{id}");
        let b = Key::from(Bytes::from_static(b"/items/{id}"));
        assert_eq!(a, b);
        assert_eq!(s.hash_one(&a), s.hash_one(&b));
        assert_ne!(Key::global(), Key::from(""));
        assert_ne!(s.hash_one(Key::global()), s.hash_one(Key::from("")));
        assert_eq!(
            Key::ip("::ffff:10.0.0.1".parse().unwrap()),
            Key::ip("10.0.0.1".parse().unwrap())
        );
    }
}
