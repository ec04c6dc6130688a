//! Configuration: plain data with documented defaults, validated into a [`Policy`] once.

use std::borrow::Cow;

use palisade_core::{ConfigError, EnforcementMode};

use crate::{
    deny::{DenyList, DenyPattern},
    method::{DEFAULT_METHODS, MethodSet},
    path::{DoubleSlash, PathRules},
    target::Policy,
};

/// Whether the guard refuses requests showing one kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Action {
    /// Refuse the request.
    Reject,
    /// Let it through.
    Allow,
}

impl Action {
    const fn rejects(self) -> bool {
        matches!(self, Self::Reject)
    }
}

/// The longest request target hyper accepts (it answers 414 above this itself), so a larger
/// limit would never apply.
pub const MAX_URI_LENGTH: usize = 65_534;

/// Configuration of the [`RequestGuardLayer`](crate::RequestGuardLayer).
///
/// | field | default | refuses |
/// |---|---|---|
/// | `mode` | enforce | `observe_only` counts and logs refusals but serves every request |
/// | `dot_segments` | reject | `.`/`..` segments, raw or encoded, also before `;` (400) |
/// | `encoded_slashes` | reject | `%2F` and `%5C` in the path (400) |
/// | `backslashes` | reject | raw `\` in the path (400) |
/// | `double_slashes` | reject | empty segments `//` (400; `redirect`: 308 to the merged path) |
/// | `double_encoding` | reject | escapes that survive decoding, `%252e` (400) |
/// | `null_bytes` | reject | `%00` in path or query (400) |
/// | `control_characters` | reject | `%01`-`%1F`, `%7F` in path or query, U+0080-U+009F in the path (400) |
/// | `invalid_percent_encoding` | reject | `%` without two hex digits, in path or query (400) |
/// | `invalid_utf8` | reject | a decoded path that is not UTF-8, overlong forms included (400) |
/// | `path_parameters` | allow | `;` in the path, raw or `%3B` (400 when set to reject) |
/// | `max_uri_length` | 8192 | longer path + query (414) |
/// | `max_query_length` | 4096 | longer query (414) |
/// | `allowed_methods` | GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS | other methods (501 + `Allow`) |
/// | `deny` | none | decoded paths matching a [`DenyPattern`] (404) |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RequestGuardConfig {
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
    /// `.` and `..` segments.
    pub dot_segments: Action,
    /// `%2F` and `%5C` in the path.
    pub encoded_slashes: Action,
    /// Raw `\` in the path.
    pub backslashes: Action,
    /// Empty segments (`//`).
    pub double_slashes: DoubleSlash,
    /// Escapes that survive one decoding.
    pub double_encoding: Action,
    /// NUL in the path or query.
    pub null_bytes: Action,
    /// Other control characters in the path or query.
    pub control_characters: Action,
    /// Malformed percent-escapes in the path or query.
    pub invalid_percent_encoding: Action,
    /// A decoded path that is not UTF-8.
    pub invalid_utf8: Action,
    /// `;` path parameters.
    pub path_parameters: Action,
    /// The longest path + query, in bytes.
    pub max_uri_length: usize,
    /// The longest query, in bytes (without the `?`).
    pub max_query_length: usize,
    /// The methods served; others get 501. Case-sensitive.
    pub allowed_methods: Vec<Cow<'static, str>>,
    /// Paths refused with 404.
    pub deny: Vec<DenyPattern>,
}

impl Default for RequestGuardConfig {
    fn default() -> Self {
        Self {
            mode: EnforcementMode::Enforce,
            dot_segments: Action::Reject,
            encoded_slashes: Action::Reject,
            backslashes: Action::Reject,
            double_slashes: DoubleSlash::Reject,
            double_encoding: Action::Reject,
            null_bytes: Action::Reject,
            control_characters: Action::Reject,
            invalid_percent_encoding: Action::Reject,
            invalid_utf8: Action::Reject,
            // Off by default: `;` is legal in paths and some APIs use matrix parameters.
            path_parameters: Action::Allow,
            // nginx's default request-line buffer (8 KiB); far below hyper's 64 KiB.
            max_uri_length: 8192,
            max_query_length: 4096,
            allowed_methods: DEFAULT_METHODS.iter().map(|&m| Cow::Borrowed(m)).collect(),
            deny: Vec::new(),
        }
    }
}

impl RequestGuardConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a zero `max_uri_length` or one above
    /// [`MAX_URI_LENGTH`], a `max_query_length` above `max_uri_length`, an empty or malformed
    /// method list, or a malformed deny pattern (`deny[2].prefix`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.compile().map(drop)
    }

    pub(crate) fn compile(&self) -> Result<Policy, ConfigError> {
        if self.max_uri_length == 0 || self.max_uri_length > MAX_URI_LENGTH {
            return Err(ConfigError::new(
                "max_uri_length",
                format!(
                    "must be 1 to {MAX_URI_LENGTH} (hyper refuses longer targets itself), got {}",
                    self.max_uri_length
                ),
            ));
        }
        if self.max_query_length > self.max_uri_length {
            return Err(ConfigError::new(
                "max_query_length",
                format!(
                    "must not exceed max_uri_length ({} > {})",
                    self.max_query_length, self.max_uri_length
                ),
            ));
        }
        let path = PathRules {
            dot_segments: self.dot_segments.rejects(),
            encoded_slashes: self.encoded_slashes.rejects(),
            backslashes: self.backslashes.rejects(),
            double_slashes: self.double_slashes,
            double_encoding: self.double_encoding.rejects(),
            null_bytes: self.null_bytes.rejects(),
            control_characters: self.control_characters.rejects(),
            invalid_percent_encoding: self.invalid_percent_encoding.rejects(),
            invalid_utf8: self.invalid_utf8.rejects(),
            path_parameters: self.path_parameters.rejects(),
        };
        Ok(Policy {
            path,
            methods: MethodSet::compile(&self.allowed_methods)?,
            max_uri_length: self.max_uri_length,
            max_query_length: self.max_query_length,
            deny: DenyList::compile(&self.deny)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RequestGuardConfig::default().validate().unwrap();
    }

    #[test]
    fn nonsense_is_an_error_naming_the_field() {
        let key = |config: RequestGuardConfig| config.validate().unwrap_err().key().to_owned();
        let base = RequestGuardConfig::default;
        assert_eq!(
            key(RequestGuardConfig {
                max_uri_length: 0,
                ..base()
            }),
            "max_uri_length"
        );
        assert_eq!(
            key(RequestGuardConfig {
                max_uri_length: MAX_URI_LENGTH + 1,
                ..base()
            }),
            "max_uri_length"
        );
        assert_eq!(
            key(RequestGuardConfig {
                max_uri_length: 100,
                max_query_length: 101,
                ..base()
            }),
            "max_query_length"
        );
        assert_eq!(
            key(RequestGuardConfig {
                allowed_methods: vec![],
                ..base()
            }),
            "allowed_methods"
        );
        assert_eq!(
            key(RequestGuardConfig {
                allowed_methods: vec!["GET".into(), "G E T".into()],
                ..base()
            }),
            "allowed_methods[1]"
        );
        assert_eq!(
            key(RequestGuardConfig {
                deny: vec![DenyPattern::prefix("x")],
                ..base()
            }),
            "deny[0].prefix"
        );
        let zero_query = RequestGuardConfig {
            max_query_length: 0,
            ..base()
        };
        zero_query.validate().unwrap();
    }
}
