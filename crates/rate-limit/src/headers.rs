//! The response fields: `RateLimit-Policy` and `RateLimit` of
//! draft-ietf-httpapi-ratelimit-headers-11, and optionally the legacy `X-RateLimit-*` trio.
//!
//! Both draft fields are Structured Field Lists (RFC 9651) with one item per policy that applies
//! to the request, in the rule's order: the policy name as a String, then parameters.
//!
//! - `RateLimit-Policy: "per_ip";q=60;w=60, "daily";q=10000;w=86400`: quota `q` per window `w`
//!   seconds, the policy's rate and period. Prebuilt once per rule: it never changes.
//! - `RateLimit: "per_ip";r=42;t=18, "daily";r=9958;t=3`: `r` requests may still be made now, and
//!   `t` is the number of seconds (rounded up) until the key's quota is whole again.
//!
//! All policies are listed, not only the most restrictive: the fields are lists for exactly this,
//! and a client that wants one number takes the smallest `r`. The legacy headers carry only one
//! policy, so they report the most restrictive one (smallest remaining; on a tie the longest
//! reset), with `X-RateLimit-Reset` in delta seconds, not an epoch.

use std::{fmt::Write, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{backend::PolicyState, policy::Policy};

pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub(crate) const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub(crate) const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub(crate) const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whole seconds, rounded up (a client that waits `t` must find its quota back).
pub(crate) fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn value(text: String) -> HeaderValue {
    // Policy names are checked to `[A-Za-z0-9_.-]` and the rest is digits and punctuation, so
    // this cannot fail; an empty value is the harmless fallback.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `RateLimit-Policy` for these policies.
pub(crate) fn policy_field<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> HeaderValue {
    let mut out = String::new();
    for (i, policy) in policies.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "\"{}\";q={};w={}",
            policy.name(),
            policy.rate(),
            seconds_up(policy.period())
        );
    }
    value(out)
}

/// A field value built on the stack: the `RateLimit` field is written on every response, and
/// `fmt` machinery plus a growing `String` cost more than the rest of the check.
struct FieldBuf {
    bytes: [u8; 128],
    len: usize,
    // One policy with a long name fits on the stack; several long ones go here.
    spill: Vec<u8>,
}

impl FieldBuf {
    fn new() -> Self {
        Self {
            bytes: [0; 128],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) {
        if self.spill.is_empty() && self.len + data.len() <= self.bytes.len() {
            self.bytes[self.len..self.len + data.len()].copy_from_slice(data);
            self.len += data.len();
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.bytes[..self.len]);
            }
            self.spill.extend_from_slice(data);
        }
    }

    fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            // `n % 10` is below 10.
            #[allow(clippy::cast_possible_truncation)]
            let digit = (n % 10) as u8;
            digits[i] = b'0' + digit;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn value(&self) -> HeaderValue {
        let bytes = if self.spill.is_empty() {
            &self.bytes[..self.len]
        } else {
            &self.spill
        };
        HeaderValue::from_bytes(bytes).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// `RateLimit` for these policies and their states.
pub(crate) fn ratelimit_field<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    states: &[PolicyState],
) -> HeaderValue {
    let mut out = FieldBuf::new();
    for (i, (policy, state)) in policies.into_iter().zip(states).enumerate() {
        if i > 0 {
            out.push(b", ");
        }
        out.push(b"\"");
        out.push(policy.name().as_bytes());
        out.push(b"\";r=");
        out.push_u64(state.remaining);
        out.push(b";t=");
        out.push_u64(seconds_up(state.reset));
    }
    out.value()
}

/// The response fields of one decision, computed in `call` and added to the response.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    ratelimit: HeaderValue,
    policy: HeaderValue,
    legacy: Option<Box<[HeaderValue; 3]>>,
}

impl Fields {
    pub(crate) fn new<'a>(
        policies: impl IntoIterator<Item = &'a Policy> + Clone,
        states: &[PolicyState],
        policy_field: HeaderValue,
        legacy: bool,
    ) -> Self {
        let legacy = legacy
            .then(|| {
                policies
                    .clone()
                    .into_iter()
                    .zip(states)
                    .min_by_key(|(_, s)| (s.remaining, std::cmp::Reverse(s.reset)))
                    .map(|(policy, state)| {
                        Box::new([
                            HeaderValue::from(policy.rate()),
                            HeaderValue::from(state.remaining),
                            HeaderValue::from(seconds_up(state.reset)),
                        ])
                    })
            })
            .flatten();
        Self {
            ratelimit: ratelimit_field(policies, states),
            policy: policy_field,
            legacy,
        }
    }

    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy);
        headers.insert(RATELIMIT, self.ratelimit);
        if let Some(legacy) = self.legacy {
            let [limit, remaining, reset] = *legacy;
            headers.insert(X_LIMIT, limit);
            headers.insert(X_REMAINING, remaining);
            headers.insert(X_RESET, reset);
        }
    }
}

#[cfg(test)]
mod tests;
