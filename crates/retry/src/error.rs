//! [`RetryError`]: the error of a retried call.

use std::{fmt, time::Duration};

/// The error of a call made through [`Retry`](crate::Retry) or [`Retrier`](crate::Retrier):
/// the last attempt's own error, or its timeout.
#[derive(Debug)]
pub enum RetryError<E> {
    /// The last attempt failed with this error.
    Inner(E),
    /// The last attempt did not answer within `attempt_timeout` (the duration).
    AttemptTimeout(Duration),
}

impl<E> RetryError<E> {
    /// The last attempt's error, unless it timed out.
    pub fn inner(&self) -> Option<&E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::AttemptTimeout(_) => None,
        }
    }

    /// The last attempt's error, unless it timed out.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::AttemptTimeout(_) => None,
        }
    }

    /// Whether the last attempt timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::AttemptTimeout(_))
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => e.fmt(f),
            Self::AttemptTimeout(t) => write!(f, "attempt timed out after {} ms", t.as_millis()),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Inner(e) => Some(e),
            Self::AttemptTimeout(_) => None,
        }
    }
}
