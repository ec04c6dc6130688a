//! Which client sent a request, believing forwarded headers only from trusted proxies:
//! [`ClientIpResolver`] and the [`ClientIp`] extractor.
//!
//! The algorithm is the one nginx (`set_real_ip_from` + `real_ip_recursive on`) and Envoy converge
//! on:
//!
//! 1. The TCP peer (axum `ConnectInfo<SocketAddr>`) is the client, unless it is in a trusted
//!    range. Headers from anyone else are the client's to forge and are never read.
//! 2. From a trusted peer, the addresses in `X-Forwarded-For` (or RFC 7239 `Forwarded: for=`) are
//!    read across **all** field lines in order, and walked from the **right**: each proxy appends
//!    the address it received the request from, so the right end is written by the proxies
//!    closest to us and the left end by whoever spoke first, possibly a liar.
//! 3. Trusted addresses are skipped; the first untrusted one is the client. When every address is
//!    trusted, the leftmost one is.
//! 4. An entry that does not parse as an address (`unknown`, an obfuscated `_hidden` node,
//!    garbage, a non-ASCII line) stops the walk and the answer is the peer itself: nothing left of
//!    a break can be believed, and the walk never skips leftward over it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::{Extensions, HeaderMap, HeaderName, request::Parts};
use palisade_core::{TrustedPeers, peer_ip};

/// Which forwarded header a trusted proxy writes.
///
/// Read only one: a request that carries both mixes hops of different proxies, and choosing the
/// header by priority lets a client pick the one its proxy does not overwrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default; what most load balancers send).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// Resolves the client address of a request from its TCP peer and, when the peer is a trusted
/// proxy, its forwarded header.
///
/// 1. The TCP peer (axum `ConnectInfo<SocketAddr>`) is the client, unless it is in a trusted
///    range. Headers from anyone else are the client's to forge and are never read.
/// 2. From a trusted peer, the addresses in `X-Forwarded-For` (or RFC 7239 `Forwarded: for=`) are
///    read across **all** field lines in order and walked from the **right**: each proxy appends
///    the address it received the request from, so the right end is written by the proxies
///    closest to us and the left end by whoever spoke first, possibly a liar.
/// 3. Trusted addresses are skipped; the first untrusted one is the client. When every address is
///    trusted, the leftmost one is.
/// 4. An entry that is not an address (`unknown`, an obfuscated `_hidden` node, garbage, a
///    non-ASCII line) stops the walk, and the answer is the peer itself: nothing left of a break
///    can be believed, and the walk never skips leftward over it.
///
/// Ports and brackets are accepted (`192.0.2.1:4711`, `[2001:db8::1]:4711`); IPv4-mapped IPv6
/// addresses are compared and returned as IPv4.
///
/// The rate-limit layer uses it for client-IP keys and, when proxies are trusted, puts the answer
/// into the request's extensions as [`ClientIp`], so handlers and other layers see the same
/// address. Other layers can hold a resolver of their own with the same ranges.
///
/// ```
/// use std::net::SocketAddr;
/// use axum::extract::ConnectInfo;
/// use palisade_core::{Cidr, TrustedPeers};
/// use palisade_rate_limit::{ClientIpResolver, ForwardedHeader};
///
/// let resolver = ClientIpResolver::new(
///     TrustedPeers::new(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]),
///     ForwardedHeader::XForwardedFor,
/// );
/// let mut request = http::Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")
///     .body(())
///     .unwrap();
/// // From the load balancer at 10.0.0.1: the client is the first untrusted hop from the right.
/// request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 40000))));
/// assert_eq!(resolver.resolve(request.headers(), request.extensions()), Some("198.51.100.7".parse().unwrap()));
///
/// // The same header straight from the internet is ignored.
/// request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 40000))));
/// assert_eq!(resolver.resolve(request.headers(), request.extensions()), Some("203.0.113.9".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: TrustedPeers,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// Reads `header` from peers in `trusted`.
    pub fn new(trusted: TrustedPeers, header: ForwardedHeader) -> Self {
        Self { trusted, header }
    }

    /// Trusts no proxy: the client is always the TCP peer (the default).
    pub fn peer_only() -> Self {
        Self::default()
    }

    /// The trusted proxy ranges.
    pub fn trusted(&self) -> &TrustedPeers {
        &self.trusted
    }

    /// The client address of a request with these headers and extensions, or `None` when the
    /// server gives no peer address (started without `ConnectInfo`).
    pub fn resolve(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        peer_ip(extensions).map(|peer| self.resolve_from(peer, headers))
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn resolve_from(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted.contains(peer) {
            return peer;
        }
        let name: HeaderName = match self.header {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => http::header::FORWARDED,
        };
        let mut walk = Walk {
            trusted: &self.trusted,
            leftmost_trusted: None,
        };
        for line in headers.get_all(name).iter().rev() {
            let Ok(line) = line.to_str() else {
                return peer;
            };
            let step = match self.header {
                ForwardedHeader::XForwardedFor => walk_xff_line(line, &mut walk),
                ForwardedHeader::Forwarded => walk_forwarded_line(line, &mut walk),
            };
            match step {
                Step::Continue => {}
                Step::Client(ip) => return ip,
                Step::Broken => return peer,
            }
        }
        walk.leftmost_trusted.unwrap_or(peer)
    }
}

enum Step {
    Continue,
    Client(IpAddr),
    Broken,
}

struct Walk<'a> {
    trusted: &'a TrustedPeers,
    leftmost_trusted: Option<IpAddr>,
}

impl Walk<'_> {
    fn hop(&mut self, hop: Option<IpAddr>) -> Step {
        match hop {
            None => Step::Broken,
            Some(ip) if self.trusted.contains(ip) => {
                self.leftmost_trusted = Some(ip);
                Step::Continue
            }
            Some(ip) => Step::Client(ip),
        }
    }
}

const fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn walk_xff_line(line: &str, walk: &mut Walk<'_>) -> Step {
    for entry in line.rsplit(',') {
        let entry = entry.trim_matches(is_ows);
        // RFC 9110 list syntax: empty elements are ignored.
        if entry.is_empty() {
            continue;
        }
        match walk.hop(parse_node(entry)) {
            Step::Continue => {}
            other => return other,
        }
    }
    Step::Continue
}

/// One address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`. IPv4-mapped IPv6 becomes IPv4. Zone ids, host names
/// and anything else are `None`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else {
        let (host, port) = text.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u16>().is_ok()
}

/// Walks the elements of one `Forwarded` line from the right. Elements are split right to left,
/// aware of quoted strings, so a malformed (for example unterminated) element written by the
/// client on the left cannot swallow the well-formed ones our proxies appended on the right.
fn walk_forwarded_line(line: &str, walk: &mut Walk<'_>) -> Step {
    let bytes = line.as_bytes();
    let mut end = bytes.len();
    let mut in_quotes = false;
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        match bytes[i] {
            b'"' if !is_escaped(bytes, i) => in_quotes = !in_quotes,
            b',' if !in_quotes => {
                if let Some(step) = forwarded_element(&line[i + 1..end], walk) {
                    return step;
                }
                end = i;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Step::Broken;
    }
    forwarded_element(&line[..end], walk).unwrap_or(Step::Continue)
}

/// Whether the quote at `i` is escaped by an odd number of backslashes.
fn is_escaped(bytes: &[u8], i: usize) -> bool {
    bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// `None` to go on walking, `Some(step)` to stop.
fn forwarded_element(element: &str, walk: &mut Walk<'_>) -> Option<Step> {
    let element = element.trim_matches(is_ows);
    if element.is_empty() {
        return None;
    }
    match walk.hop(forwarded_for(element)) {
        Step::Continue => None,
        other => Some(other),
    }
}

/// The `for=` node of one element (`for=192.0.2.60;proto=http;by=203.0.113.43`), if it has
/// exactly one and it is an address. `unknown` and obfuscated nodes (`_hidden`) are `None`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut node = None;
    let mut rest = element;
    loop {
        let (pair, tail) = split_pair(rest)?;
        let (name, value) = pair.split_once('=')?;
        let name = name.trim_matches(is_ows);
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        let value = unquote(value.trim_matches(is_ows))?;
        if name.eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None;
            }
            node = Some(value);
        }
        match tail {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    let node = node?;
    if node.eq_ignore_ascii_case("unknown") || node.starts_with('_') {
        return None;
    }
    parse_node(&node)
}

/// Splits off the first `name=value` pair at a `;` outside quotes. `None` for an unterminated
/// quote.
fn split_pair(text: &str) -> Option<(&str, Option<&str>)> {
    let bytes = text.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => return Some((&text[..i], Some(&text[i + 1..]))),
            _ => {}
        }
        i += 1;
    }
    (!in_quotes).then_some((text, None))
}

/// A token, or a quoted string with its escapes resolved.
fn unquote(value: &str) -> Option<String> {
    if let Some(inner) = value.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    } else if !value.is_empty()
        && value
            .bytes()
            .all(|b| is_tchar(b) || matches!(b, b':' | b'[' | b']'))
    {
        // Lenient: RFC 7239 wants `:` and brackets quoted, but proxies are known to write
        // `for=192.0.2.1:80` bare. The address itself is still parsed strictly.
        Some(value.to_owned())
    } else {
        None
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The client address of the request, as the rate-limit layer resolved it: an axum extractor,
/// so handlers log and authorise by the same address the limits count.
///
/// The layer records the address when trusted proxies are configured. Otherwise (no trusted
/// proxies, or no rate-limit layer at all) the extractor answers with the TCP peer, which is then
/// the same answer; never with a header. It rejects with `500` only when the server gives no peer address at all (started
/// without `into_make_service_with_connect_info::<SocketAddr>()`).
///
/// ```
/// use palisade_rate_limit::ClientIp;
///
/// async fn handler(ClientIp(ip): ClientIp) -> String {
///     format!("hello {ip}")
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| Self(addr.ip().to_canonical()))
            .ok_or((
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "client address unavailable: serve with connect info",
            ))
    }
}

#[cfg(test)]
mod tests;
