//! The request facts every span and metric needs, read cheaply and with bounded cardinality.

use std::fmt;

use http::{HeaderMap, Method, Request, Version, header};

/// The methods the HTTP semantic conventions know (RFC 9110 plus `PATCH`), then `_OTHER`.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

/// The index of `_OTHER` in [`METHODS`].
pub(crate) const OTHER_METHOD: u8 = 9;

/// The index of `method` in [`METHODS`]: a known method, or `_OTHER` for anything else, so
/// clients cannot create label values or span names by inventing methods.
pub(crate) fn method_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ => OTHER_METHOD,
    }
}

/// `network.protocol.version`.
pub(crate) fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The span name: `{method} {route}`, `{method}` when no route matched, and `HTTP` in place of
/// the method when it is not a known one (the semantic conventions' rule for `_OTHER`).
pub(crate) struct SpanName<'a> {
    pub(crate) method: u8,
    pub(crate) route: Option<&'a str>,
}

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = if self.method == OTHER_METHOD {
            "HTTP"
        } else {
            METHODS[usize::from(self.method)]
        };
        match self.route {
            Some(route) => write!(f, "{method} {route}"),
            None => f.write_str(method),
        }
    }
}

/// Longest `user_agent.original` and `http.request.method_original` recorded; longer values are
/// cut at a character boundary.
pub(crate) const MAX_RECORDED_LEN: usize = 512;

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `server.address` and `server.port`: from the `Host` header (HTTP/1.1) or the request target's
/// authority (HTTP/2 `:authority`, absolute-form). The port defaults to the scheme's.
pub(crate) fn server_address<B>(request: &Request<B>, https: bool) -> Option<(&str, i64)> {
    let host = match request.uri().authority() {
        Some(authority) => authority.as_str(),
        None => request.headers().get(header::HOST)?.to_str().ok()?,
    };
    // Strip userinfo (never in Host, possible in an absolute-form target).
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let default_port = if https { 443 } else { 80 };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        let (addr, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (addr, port)
    } else {
        match host.rsplit_once(':') {
            Some((name, p)) => (name, p.parse::<u16>().ok()?),
            None => (host, default_port),
        }
    };
    if name.is_empty() || name.len() > 255 {
        return None;
    }
    Some((name, i64::from(port)))
}

/// The query with the values of sensitive keys replaced by `REDACTED` (the semantic
/// conventions' placeholder). Keys are compared ASCII-case-insensitively after percent-decoding
/// (and `+` as a space), as the application's query parser will read them: `access%5Ftoken` is
/// `access_token`.
pub(crate) fn redact_query(query: &str, sensitive: &[Box<str>]) -> String {
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if is_sensitive(key, sensitive) => {
                out.push_str(key);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
    out
}

fn is_sensitive(key: &str, sensitive: &[Box<str>]) -> bool {
    if !key.contains(['%', '+']) {
        return sensitive.iter().any(|s| s.eq_ignore_ascii_case(key));
    }
    let decoded = percent_decode_lossy(key);
    sensitive.iter().any(|s| s.eq_ignore_ascii_case(&decoded))
}

/// `key` with `%XX` escapes decoded and `+` as a space; a malformed escape is kept as it is, and
/// bytes that are not UTF-8 become U+FFFD (no sensitive key contains either).
fn percent_decode_lossy(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        // Two hex digits: below 256.
                        #[allow(clippy::cast_possible_truncation)]
                        out.push((high * 16 + low) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The values of `name` as an attribute: a string array, one element per field, or `None` when
/// the header is absent or no value is text.
pub(crate) fn header_values(headers: &HeaderMap, name: &http::HeaderName) -> Option<Vec<String>> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| truncated(v, MAX_RECORDED_LEN).to_owned())
        .collect();
    (!values.is_empty()).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Option<&str>, uri: &str) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn server_address_from_host_or_authority() {
        assert_eq!(
            server_address(&request(Some("example.com:8080"), "/"), false),
            Some(("example.com", 8080))
        );
        assert_eq!(
            server_address(&request(Some("example.com"), "/"), false),
            Some(("example.com", 80))
        );
        assert_eq!(
            server_address(&request(Some("example.com"), "/"), true),
            Some(("example.com", 443))
        );
        assert_eq!(
            server_address(&request(Some("[::1]:9000"), "/"), false),
            Some(("::1", 9000))
        );
        assert_eq!(
            server_address(&request(Some("[::1]"), "/"), false),
            Some(("::1", 80))
        );
        assert_eq!(
            server_address(&request(None, "http://api.test:81/x"), false),
            Some(("api.test", 81))
        );
        assert_eq!(server_address(&request(Some("bad:port"), "/"), false), None);
        assert_eq!(server_address(&request(None, "/"), false), None);
    }

    #[test]
    fn sensitive_query_values_are_redacted() {
        let keys: Vec<Box<str>> = vec!["token".into(), "sig".into()];
        assert_eq!(
            redact_query("a=1&TOKEN=secret&sig=x&b", &keys),
            "a=1&TOKEN=REDACTED&sig=REDACTED&b"
        );
        assert_eq!(redact_query("tokens=1", &keys), "tokens=1");
        // Keys as the application's parser reads them: percent-decoded, `+` a space.
        let keys: Vec<Box<str>> = vec!["access_token".into(), "api key".into()];
        assert_eq!(
            redact_query(
                "access%5Ftoken=s1&ACCESS%5ftoken=s2&api+key=s3&api%20key=s4",
                &keys
            ),
            "access%5Ftoken=REDACTED&ACCESS%5ftoken=REDACTED&api+key=REDACTED&api%20key=REDACTED"
        );
        // Malformed escapes are compared as sent, and never panic.
        assert_eq!(redact_query("%=1&%4=2&%zz=3&%", &keys), "%=1&%4=2&%zz=3&%");
    }

    #[test]
    fn span_names_follow_the_conventions() {
        let name = |method, route| SpanName { method, route }.to_string();
        assert_eq!(name(0, Some("/items/{id}")), "GET /items/{id}");
        assert_eq!(name(2, None), "POST");
        assert_eq!(name(OTHER_METHOD, Some("/x")), "HTTP /x");
        assert_eq!(name(OTHER_METHOD, None), "HTTP");
        assert_eq!(
            method_index(&Method::from_bytes(b"BREW").unwrap()),
            OTHER_METHOD
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(truncated("hello", 10), "hello");
    }
}
