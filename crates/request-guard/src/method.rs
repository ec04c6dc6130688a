//! The method allow-list.
//!
//! The guard answers methods outside the list with `501 Not Implemented` (RFC 9110 15.6.2: the
//! server does not support the method for any resource) and an `Allow` header listing the list.
//! `405 Method Not Allowed` is a statement about one resource, which only the router knows:
//! axum's `MethodRouter` already answers it with the route's `Allow` header, and since the guard
//! passes every allowed method through, that keeps working behind the guard.

use std::borrow::Cow;

use http::{HeaderValue, Method};
use palisade_core::ConfigError;

/// The default allow-list: the methods of ordinary HTTP APIs and pages (Spring's
/// `StrictHttpFirewall` list). `TRACE` echoes requests (cross-site tracing) and `CONNECT` opens
/// tunnels, so neither is on it.
pub(crate) const DEFAULT_METHODS: [&str; 7] =
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The compiled allow-list.
#[derive(Debug, Clone)]
pub(crate) struct MethodSet {
    methods: Box<[Method]>,
    /// The `Allow` header of a 501, built once.
    allow: HeaderValue,
}

impl MethodSet {
    pub(crate) fn compile(names: &[Cow<'static, str>]) -> Result<Self, ConfigError> {
        if names.is_empty() {
            return Err(ConfigError::new(
                "allowed_methods",
                "must list at least one method",
            ));
        }
        let mut methods: Vec<Method> = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            // Methods are case-sensitive tokens (RFC 9110 9.1): `get` is not `GET`.
            let method = Method::from_bytes(name.as_bytes())
                .ok()
                .filter(|_| !name.is_empty() && name.len() <= 32)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("allowed_methods[{i}]"),
                        format!("{name:?} is not a method token of 1 to 32 characters"),
                    )
                })?;
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let allow = HeaderValue::from_str(&allow)
            .map_err(|e| ConfigError::new("allowed_methods", e.to_string()))?;
        Ok(Self {
            methods: methods.into(),
            allow,
        })
    }

    /// Whether `method` is allowed: a short linear scan, `GET` first in the default list.
    #[inline]
    pub(crate) fn contains(&self, method: &Method) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    pub(crate) fn allow_header(&self) -> &HeaderValue {
        &self.allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&'static str]) -> Result<MethodSet, ConfigError> {
        MethodSet::compile(&names.iter().map(|&n| Cow::Borrowed(n)).collect::<Vec<_>>())
    }

    #[test]
    fn default_list_and_extensions() {
        let set = set(&DEFAULT_METHODS).unwrap();
        assert!(set.contains(&Method::GET));
        assert!(set.contains(&Method::OPTIONS));
        assert!(!set.contains(&Method::TRACE));
        assert!(!set.contains(&Method::CONNECT));
        assert!(!set.contains(&Method::from_bytes(b"PROPFIND").unwrap()));
        assert!(!set.contains(&Method::from_bytes(b"get").unwrap()));
        assert_eq!(
            set.allow_header(),
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
        let webdav = self::set(&["GET", "PROPFIND", "GET"]).unwrap();
        assert!(webdav.contains(&Method::from_bytes(b"PROPFIND").unwrap()));
        assert_eq!(webdav.allow_header(), "GET, PROPFIND");
    }

    #[test]
    fn bad_lists_are_errors() {
        assert_eq!(set(&[]).unwrap_err().key(), "allowed_methods");
        assert_eq!(
            set(&["GET", "BAD METHOD"]).unwrap_err().key(),
            "allowed_methods[1]"
        );
        assert_eq!(set(&[""]).unwrap_err().key(), "allowed_methods[0]");
    }
}
