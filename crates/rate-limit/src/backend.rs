//! Where the state lives: the [`RateLimitBackend`] trait and the [`Decision`] it returns.
//!
//! The in-memory store is built into the layer and called directly (no trait object, no
//! allocation, no future); other backends, such as a shared Redis, implement this trait and may
//! answer asynchronously.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use crate::{key::Key, policy::Policy};

/// The most policies one request can be checked against (the policies of one rule).
pub const MAX_POLICIES_PER_RULE: usize = 8;

/// An error of a backend. The layer fails open on it: it serves the request, logs a warning and
/// counts the outcome `backend_error`, because a rate limiter whose store is down must not become
/// the outage.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The state of one policy's key after a check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyState {
    /// Whether this policy refused the request.
    pub limited: bool,
    /// Requests this key may still make right now.
    pub remaining: u64,
    /// Time until the key's quota is whole again.
    pub reset: Duration,
    /// For a refusal, time until this policy would admit the next request.
    pub retry_after: Duration,
}

impl PolicyState {
    /// The policy admits: `remaining` more now, quota whole again after `reset`.
    pub fn admitted(remaining: u64, reset: Duration) -> Self {
        Self {
            limited: false,
            remaining,
            reset,
            retry_after: Duration::ZERO,
        }
    }

    /// The policy refuses: admission again after `retry_after`, quota whole after `reset`.
    pub fn limited(retry_after: Duration, reset: Duration) -> Self {
        Self {
            limited: true,
            remaining: 0,
            reset,
            retry_after,
        }
    }
}

/// The answer of a backend for one request: one [`PolicyState`] per check, in the order of the
/// checks. The request is admitted only if no policy refused it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    states: [PolicyState; MAX_POLICIES_PER_RULE],
    len: u8,
}

impl Decision {
    /// An empty decision (admits).
    pub fn new() -> Self {
        Self {
            states: [PolicyState::default(); MAX_POLICIES_PER_RULE],
            len: 0,
        }
    }

    /// A decision from states, in check order. States beyond [`MAX_POLICIES_PER_RULE`] are
    /// ignored (the layer never sends more checks than that).
    pub fn from_states(states: impl IntoIterator<Item = PolicyState>) -> Self {
        let mut decision = Self::new();
        for state in states {
            decision.push(state);
        }
        decision
    }

    pub(crate) fn push(&mut self, state: PolicyState) {
        if let Some(slot) = self.states.get_mut(usize::from(self.len)) {
            *slot = state;
            self.len += 1;
        }
    }

    /// The states, in check order.
    pub fn states(&self) -> &[PolicyState] {
        &self.states[..usize::from(self.len)]
    }

    /// Whether every policy admitted the request.
    pub fn admitted(&self) -> bool {
        self.states().iter().all(|s| !s.limited)
    }
}

impl Default for Decision {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.states()).finish()
    }
}

/// One (policy, key) pair of a request.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    policy: &'a Policy,
    key: &'a Key,
    /// The policy's position in the layer (for built-in backends' per-policy tables).
    index: usize,
}

impl<'a> Check<'a> {
    /// The pair `policy`, `key`.
    pub fn new(policy: &'a Policy, key: &'a Key) -> Self {
        Self {
            policy,
            key,
            index: 0,
        }
    }

    pub(crate) fn indexed(index: usize, policy: &'a Policy, key: &'a Key) -> Self {
        Self { policy, key, index }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The policy.
    pub fn policy(&self) -> &'a Policy {
        self.policy
    }

    /// The key.
    pub fn key(&self) -> &'a Key {
        self.key
    }
}

/// A backend's answer: ready now, or later.
// `Ready` is returned by value and consumed at once, never stored: boxing it would cost the
// synchronous path an allocation to save a copy.
#[allow(clippy::large_enum_variant)]
pub enum Pending {
    /// Decided synchronously.
    Ready(Decision),
    /// Decided by a future (one network round trip, say). A [`BackendUnavailable`] error
    /// refuses the request with 503; any other error serves it unchecked.
    Later(Pin<Box<dyn Future<Output = Result<Decision, BoxError>> + Send>>),
    /// The backend cannot decide and the request must not pass unchecked: 503 with this
    /// `Retry-After` (a backend that fails closed).
    Unavailable(Duration),
}

/// The error of a backend that fails closed: the layer answers `503 Service Unavailable` with
/// `Retry-After` instead of serving the request unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendUnavailable {
    retry_after: Duration,
}

impl BackendUnavailable {
    /// Unavailable, probably for `retry_after`.
    pub fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// The expected wait.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for BackendUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the rate-limit backend is unavailable and fails closed")
    }
}

impl std::error::Error for BackendUnavailable {}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(decision) => f.debug_tuple("Ready").field(decision).finish(),
            Self::Later(_) => f.write_str("Later(..)"),
            Self::Unavailable(wait) => f.debug_tuple("Unavailable").field(wait).finish(),
        }
    }
}

/// A store of rate-limit state shared beyond this process (the in-memory store is built in).
///
/// # Contract
///
/// `check` checks **and** updates every pair of one request at once: the request is admitted
/// only if every policy admits it, and then each key is charged one request; a refused request
/// charges nothing to any key. It returns one [`PolicyState`] per check, in order. A Redis
/// implementation does this in one Lua script, one round trip, with the server's clock.
///
/// ```
/// use std::time::Duration;
/// use palisade_rate_limit::{Check, Decision, Pending, PolicyState, RateLimitBackend};
///
/// /// Admits everything (a stand-in for a remote store in a test).
/// struct AdmitAll;
///
/// impl RateLimitBackend for AdmitAll {
///     fn check(&self, checks: &[Check<'_>]) -> Pending {
///         let states = checks.iter().map(|c| {
///             PolicyState::admitted(u64::from(c.policy().burst()), Duration::ZERO)
///         });
///         let decision = Decision::from_states(states);
///         Pending::Later(Box::pin(async move { Ok(decision) }))
///     }
/// }
/// ```
pub trait RateLimitBackend: Send + Sync + 'static {
    /// Checks and charges every pair of one request; see the [trait docs](RateLimitBackend).
    fn check(&self, checks: &[Check<'_>]) -> Pending;
}
