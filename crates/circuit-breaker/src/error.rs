//! Typed rejections for clients and guards (servers answer 503 instead).

use std::{fmt, sync::Arc, time::Duration};

use crate::machine::State;

/// A call refused by an open (or half-open and busy, or forced-open) breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub(crate) breaker: Arc<str>,
    pub(crate) state: State,
    pub(crate) retry_in: Duration,
}

impl Rejected {
    /// The breaker's name.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }

    /// The state that refused the call: [`State::Open`], [`State::HalfOpen`] (every probe slot
    /// taken) or [`State::ForcedOpen`].
    pub fn state(&self) -> State {
        self.state
    }

    /// How long until a call may be admitted: the remaining open time; zero when half-open with
    /// every probe slot taken (a slot frees when a probe ends); the configured open wait when
    /// forced open (an operator decides).
    pub fn retry_in(&self) -> Duration {
        self.retry_in
    }

    /// [`Rejected::retry_in`] in whole seconds, rounded up and at least 1, as `Retry-After` has it.
    pub fn retry_after_secs(&self) -> u64 {
        palisade_core::retry_after_seconds(self.retry_in)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker {:?} is {}: retry in {} ms",
            &*self.breaker,
            self.state,
            self.retry_in.as_millis()
        )
    }
}

impl std::error::Error for Rejected {}

/// The error of a call through a breaker: rejected without being made, or the call's own error.
#[derive(Debug)]
pub enum BreakerError<E> {
    /// The breaker refused the call; it was not made.
    Rejected(Rejected),
    /// The call was made and failed.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The rejection, if the call was refused.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            Self::Rejected(r) => Some(r),
            Self::Inner(_) => None,
        }
    }

    /// Whether the call was refused.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Rejected(_))
    }

    /// The call's own error, if it was made.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Rejected(_) => None,
            Self::Inner(e) => Some(e),
        }
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => r.fmt(f),
            Self::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rejected(r) => Some(r),
            Self::Inner(e) => Some(e),
        }
    }
}

impl<E> From<Rejected> for BreakerError<E> {
    fn from(r: Rejected) -> Self {
        Self::Rejected(r)
    }
}
