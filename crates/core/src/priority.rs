//! Request criticality, after Google's SRE book ("Handling Overload").

use std::{convert::Infallible, fmt, str::FromStr};

use axum::extract::FromRequestParts;
use http::{Extensions, Request, request::Parts};

/// How important a request is, lowest first. Under overload Palisade sheds `Sheddable` first,
/// then `SheddablePlus`, then `Critical`; `CriticalPlus` is never shed by the load shedder and may
/// use the concurrency limiter's reserve above its high-water mark.
///
/// The default is [`Critical`](Self::Critical), as in Google's systems: a request nobody classified
/// is assumed to matter, and only traffic that is known to be retryable or deferrable is marked
/// sheddable.
///
/// The class lives in request extensions, so any layer or handler reads what the classifying layer
/// decided:
///
/// ```
/// use palisade_core::Priority;
///
/// let mut request = http::Request::new(());
/// assert_eq!(Priority::of(&request), Priority::Critical); // the default
/// Priority::Sheddable.assign(&mut request);
/// assert_eq!(Priority::of(&request), Priority::Sheddable);
/// assert_eq!("critical-plus".parse::<Priority>().unwrap(), Priority::CriticalPlus);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Priority {
    /// Work that can be dropped or retried later: prefetches, batch jobs, analytics.
    Sheddable,
    /// Retryable work that a user may be waiting for.
    SheddablePlus,
    /// Normal production traffic (the default).
    #[default]
    Critical,
    /// The most important traffic: health checks, control plane, payments. Never shed.
    CriticalPlus,
}

impl Priority {
    /// Every class, lowest first: the order in which load is shed.
    pub const ALL: [Priority; 4] = [
        Self::Sheddable,
        Self::SheddablePlus,
        Self::Critical,
        Self::CriticalPlus,
    ];

    /// The class's name, as used in headers, metric labels and configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sheddable => "sheddable",
            Self::SheddablePlus => "sheddable_plus",
            Self::Critical => "critical",
            Self::CriticalPlus => "critical_plus",
        }
    }

    /// Parses a class name from untrusted bytes (a header value): ASCII case-insensitive, with `-`
    /// and `_` interchangeable and surrounding spaces ignored. Anything else is `None`; nothing
    /// is allocated and no input can panic.
    pub fn parse_bytes(value: &[u8]) -> Option<Self> {
        let value = value.trim_ascii();
        if value.len() > "sheddable_plus".len() {
            return None;
        }
        let mut buf = [0u8; 14];
        for (dst, &src) in buf.iter_mut().zip(value) {
            *dst = if src == b'-' {
                b'_'
            } else {
                src.to_ascii_lowercase()
            };
        }
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().as_bytes() == &buf[..value.len()])
    }

    /// The class assigned to a request by an earlier layer, if any.
    #[inline]
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        extensions.get::<Self>().copied()
    }

    /// The class assigned to `request`, or the default.
    pub fn of<B>(request: &Request<B>) -> Self {
        Self::from_extensions(request.extensions()).unwrap_or_default()
    }

    /// Assigns this class to `request`, replacing any earlier one.
    pub fn assign<B>(self, request: &mut Request<B>) {
        request.extensions_mut().insert(self);
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value was not a priority class name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsePriorityError;

impl fmt::Display for ParsePriorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of sheddable, sheddable_plus, critical, critical_plus")
    }
}

impl std::error::Error for ParsePriorityError {}

impl FromStr for Priority {
    type Err = ParsePriorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes()).ok_or(ParsePriorityError)
    }
}

/// Handlers take `priority: Priority` to read the class assigned by the load shedder (or the
/// default when none was assigned). Never rejects.
impl<S: Send + Sync> FromRequestParts<S> for Priority {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classes_are_ordered_lowest_first() {
        assert!(Priority::Sheddable < Priority::SheddablePlus);
        assert!(Priority::SheddablePlus < Priority::Critical);
        assert!(Priority::Critical < Priority::CriticalPlus);
        let mut sorted = Priority::ALL;
        sorted.sort();
        assert_eq!(sorted, Priority::ALL);
    }

    #[test]
    fn names_round_trip_in_every_spelling() {
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
            assert_eq!(p.as_str().to_uppercase().parse::<Priority>(), Ok(p));
            assert_eq!(p.as_str().replace('_', "-").parse::<Priority>(), Ok(p));
            assert_eq!(Priority::parse_bytes(format!("  {p} ").as_bytes()), Some(p));
        }
    }

    #[test]
    fn junk_is_rejected() {
        for junk in [
            "",
            "high",
            "critical plus",
            "critical__plus",
            "criticalplus",
            "sheddable_plus_x",
            "critical\0",
        ] {
            assert_eq!(Priority::parse_bytes(junk.as_bytes()), None, "{junk:?}");
        }
        assert_eq!(Priority::parse_bytes(&[0xff, 0xfe]), None);
    }

    #[tokio::test]
    async fn extractor_reads_the_assigned_class() {
        let mut request = Request::new(());
        Priority::SheddablePlus.assign(&mut request);
        let (mut parts, ()) = request.into_parts();
        let got = Priority::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(got, Priority::SheddablePlus);
        let (mut bare, ()) = Request::new(()).into_parts();
        assert_eq!(
            Priority::from_request_parts(&mut bare, &()).await.unwrap(),
            Priority::Critical
        );
    }

    proptest! {
        // Untrusted header bytes: never a panic, and a class only for an exact (folded) name.
        #[test]
        fn parse_never_panics_and_only_accepts_names(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(p) = Priority::parse_bytes(&bytes) {
                let folded: Vec<u8> = bytes.trim_ascii().iter()
                    .map(|b| if *b == b'-' { b'_' } else { b.to_ascii_lowercase() })
                    .collect();
                prop_assert_eq!(folded.as_slice(), p.as_str().as_bytes());
            }
        }

        #[test]
        fn names_with_noise_parse(index in 0usize..4, upper in any::<bool>(), pad in 0usize..3) {
            let p = Priority::ALL[index];
            let name = if upper { p.as_str().to_uppercase() } else { p.as_str().to_string() };
            let padded = format!("{}{}{}", " ".repeat(pad), name, "\t".repeat(pad));
            prop_assert_eq!(Priority::parse_bytes(padded.as_bytes()), Some(p));
        }
    }
}
