//! [`Limiter`]: the state every service of one layer shares, and the decision for one request.

use std::{cell::Cell, collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::extract::{ConnectInfo, MatchedPath};
use http::{HeaderValue, Request, Response, StatusCode};
use palisade_core::{
    EnforcementMode, EventLimiter, Rejection, ResponseBody, RetryAfter, SECURITY_TARGET,
};
use tokio::time::Instant;

use crate::{
    backend::{
        BackendUnavailable, BoxError, Check, Decision, MAX_POLICIES_PER_RULE, Pending, PolicyState,
        RateLimitBackend,
    },
    client_ip::{ClientIp, ClientIpResolver},
    headers::{self, Fields},
    key::{Extractor, Key, Lookup, RequestInfo, group_ipv6},
    metrics::PolicyMetrics,
    policy::Policy,
    store::LocalStore,
};

/// The policies of one rule, with the `RateLimit-Policy` field prebuilt.
pub(crate) struct Rule {
    pub(crate) policies: Box<[usize]>,
    pub(crate) policy_field: HeaderValue,
}

pub(crate) enum Backend {
    Local(LocalStore),
    Remote(Arc<dyn RateLimitBackend>),
    #[cfg(feature = "redis")]
    Redis(Arc<crate::remote::RedisBackend>),
}

impl Backend {
    fn remote(&self) -> Option<&dyn RateLimitBackend> {
        match self {
            Self::Local(_) => None,
            Self::Remote(backend) => Some(&**backend),
            #[cfg(feature = "redis")]
            Self::Redis(backend) => Some(&**backend),
        }
    }
}

/// Everything a layer's services share.
pub(crate) struct Limiter {
    pub(crate) policies: Box<[Policy]>,
    pub(crate) extractors: Box<[Extractor]>,
    pub(crate) metrics: Box<[PolicyMetrics]>,
    pub(crate) rejections: Box<[Rejection]>,
    /// The answer while a backend that fails closed cannot decide.
    pub(crate) unavailable: Rejection,
    pub(crate) default_rule: Rule,
    pub(crate) rules: Box<[Rule]>,
    pub(crate) routes: HashMap<Box<str>, usize>,
    pub(crate) resolver: ClientIpResolver,
    pub(crate) ipv6_prefix: u8,
    pub(crate) backend: Backend,
    pub(crate) headers: bool,
    pub(crate) legacy_headers: bool,
    pub(crate) mode: EnforcementMode,
    pub(crate) epoch: Instant,
    /// At most ten refusal events a second are written; the metrics count them all.
    pub(crate) events: EventLimiter,
}

/// The policies that applied to one request (those whose key was present), in rule order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    policies: [u8; MAX_POLICIES_PER_RULE],
    len: u8,
    /// All of the rule's policies applied, so its prebuilt field is right.
    whole_rule: Option<usize>,
}

impl Applied {
    fn indices(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        self.policies[..usize::from(self.len)]
            .iter()
            .map(|&i| usize::from(i))
    }
}

/// What the service does with a request.
pub(crate) enum Admission<B> {
    /// Serve it, adding these fields to the response.
    Admit(Option<Fields>),
    /// Answer this instead.
    Reject(Box<Response<ResponseBody<B>>>),
    /// Ask again when the backend answers.
    Later(
        std::pin::Pin<Box<dyn Future<Output = Result<Decision, BoxError>> + Send>>,
        Applied,
    ),
}

/// The rule index meaning "the default rule".
const DEFAULT_RULE: usize = usize::MAX;

impl Limiter {
    #[inline]
    fn now(&self) -> u64 {
        // Whole seconds and nanoseconds without the `u128` of `as_nanos`; 2^64 ns is 584 years.
        let since = Instant::now().saturating_duration_since(self.epoch);
        since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()))
    }

    fn rule(&self, index: usize) -> &Rule {
        if index == DEFAULT_RULE {
            &self.default_rule
        } else {
            &self.rules[index]
        }
    }

    fn rule_index<B>(&self, request: &Request<B>) -> usize {
        if self.routes.is_empty() {
            return DEFAULT_RULE;
        }
        request
            .extensions()
            .get::<MatchedPath>()
            .and_then(|path| self.routes.get(path.as_str()).copied())
            .unwrap_or(DEFAULT_RULE)
    }

    /// Decides `request`, and records the client address in its extensions as [`ClientIp`].
    // Without the `redis` feature the remote arm matches one variant, with it two.
    #[allow(clippy::match_wildcard_for_single_variants)]
    pub(crate) fn admit<ReqBody, B>(&self, request: &mut Request<ReqBody>) -> Admission<B> {
        let rule_index = self.rule_index(request);
        let rule = self.rule(rule_index);
        // One client-IP policy in memory, the common rule: no key to build, no arrays to fill.
        if let (Backend::Local(store), &[policy]) = (&self.backend, &*rule.policies)
            && self.extractors[policy].is_client_ip()
        {
            return self.admit_client_ip(store, rule_index, policy, request);
        }
        let client_ip = Cell::new(Lookup::Pending);
        let info = RequestInfo::new(request, &self.resolver, &client_ip);
        let mut applied = Applied {
            policies: [0; MAX_POLICIES_PER_RULE],
            len: 0,
            whole_rule: None,
        };
        let admission = match &self.backend {
            Backend::Local(store) => {
                let mut pairs = [(0usize, 0u64); MAX_POLICIES_PER_RULE];
                // Several client-IP policies (per minute, per hour, per day) share one hash.
                let mut ip_hash = None;
                for &policy in &rule.policies {
                    let extractor = &self.extractors[policy];
                    let hash = if extractor.is_client_ip() {
                        if let Some(hash) = ip_hash {
                            hash
                        } else {
                            let Some(key) = extractor.extract(&info, self.ipv6_prefix) else {
                                continue;
                            };
                            *ip_hash.insert(store.hash(&key))
                        }
                    } else {
                        let Some(key) = extractor.extract(&info, self.ipv6_prefix) else {
                            continue;
                        };
                        store.hash(&key)
                    };
                    pairs[usize::from(applied.len)] = (policy, hash);
                    applied.push(policy);
                }
                match applied.len {
                    0 => Admission::Admit(None),
                    // One policy, the common case: no `Decision` to build and copy.
                    1 => {
                        let state = store.check_one(pairs[0].0, pairs[0].1, self.now());
                        self.finish(rule_index, applied, std::slice::from_ref(&state))
                    }
                    n => {
                        let decision = store.check(&pairs[..usize::from(n)], self.now());
                        self.finish(rule_index, applied, decision.states())
                    }
                }
            }
            remote => {
                let Some(backend) = remote.remote() else {
                    return Admission::Admit(None);
                };
                let mut keys: Vec<(usize, Key)> = Vec::with_capacity(rule.policies.len());
                for &policy in &rule.policies {
                    if let Some(key) = self.extractors[policy].extract(&info, self.ipv6_prefix) {
                        keys.push((policy, key));
                        applied.push(policy);
                    }
                }
                if keys.is_empty() {
                    Admission::Admit(None)
                } else {
                    let checks: Vec<Check<'_>> = keys
                        .iter()
                        .map(|(p, key)| Check::indexed(*p, &self.policies[*p], key))
                        .collect();
                    match backend.check(&checks) {
                        Pending::Ready(decision) => {
                            self.finish(rule_index, applied, decision.states())
                        }
                        Pending::Unavailable(wait) => self.unavailable(applied, wait),
                        Pending::Later(future) => {
                            applied.whole_rule = (usize::from(applied.len) == rule.policies.len())
                                .then_some(rule_index);
                            Admission::Later(future, applied)
                        }
                    }
                }
            }
        };
        self.record_client_ip(request, client_ip.get());
        admission
    }

    /// [`Self::admit`] for a rule of one client-IP policy on the local store.
    #[inline]
    fn admit_client_ip<ReqBody, B>(
        &self,
        store: &LocalStore,
        rule_index: usize,
        policy: usize,
        request: &mut Request<ReqBody>,
    ) -> Admission<B> {
        if self.resolver.trusted().ranges().is_empty() {
            // No proxy to trust: the client is the peer, and nothing is recorded (see
            // `record_client_ip`). An IPv4 peer goes from `ConnectInfo` into the hash by value:
            // through `resolve`, the `IpAddr` went by memory and its reload stalled on store
            // forwarding, about a fifth of the check.
            let hash = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(SocketAddr::V4(peer))) => store.hash_ipv4(*peer.ip()),
                peer => store
                    .hash_ip(peer.map(|ConnectInfo(peer)| group_ipv6(peer.ip(), self.ipv6_prefix))),
            };
            let state = store.check_one(policy, hash, self.now());
            return self.finish_one(rule_index, policy, state);
        }
        let ip = self
            .resolver
            .resolve(request.headers(), request.extensions());
        let hash = store.hash_ip(ip.map(|ip| group_ipv6(ip, self.ipv6_prefix)));
        let state = store.check_one(policy, hash, self.now());
        let admission = self.finish_one(rule_index, policy, state);
        self.record_client_ip(request, Lookup::Done(ip));
        admission
    }

    /// Handlers see the address the limits counted. Without trusted proxies it is the peer,
    /// which the `ClientIp` extractor falls back to anyway: no extension to allocate.
    #[inline]
    fn record_client_ip<ReqBody>(&self, request: &mut Request<ReqBody>, lookup: Lookup) {
        if !self.resolver.trusted().ranges().is_empty() {
            let ip = match lookup {
                Lookup::Done(ip) => ip,
                Lookup::Pending => self
                    .resolver
                    .resolve(request.headers(), request.extensions()),
            };
            if let Some(ip) = ip {
                request.extensions_mut().insert(ClientIp(ip));
            }
        }
    }

    /// [`Self::finish`] for a rule of one policy that applied.
    #[inline]
    fn finish_one<B>(&self, rule_index: usize, policy: usize, state: PolicyState) -> Admission<B> {
        // Admitted without fields to write: one counter, nothing else to build.
        let writes_fields = self.headers && self.mode.enforces();
        if !state.limited && !writes_fields {
            self.metrics[policy].admitted.increment(1);
            return Admission::Admit(None);
        }
        let mut applied = Applied {
            policies: [0; MAX_POLICIES_PER_RULE],
            len: 0,
            whole_rule: None,
        };
        applied.push(policy);
        self.finish(rule_index, applied, std::slice::from_ref(&state))
    }

    /// Counts and answers a decision.
    pub(crate) fn finish<B>(
        &self,
        rule_index: usize,
        mut applied: Applied,
        states: &[PolicyState],
    ) -> Admission<B> {
        if applied.whole_rule.is_none()
            && usize::from(applied.len) == self.rule(rule_index).policies.len()
        {
            applied.whole_rule = Some(rule_index);
        }
        self.conclude(applied, states)
    }

    /// The answer once the backend has decided (for the asynchronous path).
    pub(crate) fn conclude<B>(&self, applied: Applied, states: &[PolicyState]) -> Admission<B> {
        let admitted = states.iter().all(|s| !s.limited);
        let enforce = self.mode.enforces();
        for (policy, state) in applied.indices().zip(states) {
            let metrics = &self.metrics[policy];
            if admitted {
                metrics.admitted.increment(1);
            } else if state.limited {
                if enforce {
                    metrics.limited.increment(1);
                } else {
                    metrics.limited_observed.increment(1);
                    tracing::debug!(
                        policy = self.policies[policy].name(),
                        "rate limit would refuse this request (observe-only)"
                    );
                }
            }
        }
        // Observe-only stays invisible to clients: no fields, so none of them backs off.
        let fields = (self.headers && enforce).then(|| self.fields(applied, states));
        if admitted || !enforce {
            return Admission::Admit(fields);
        }
        let (position, wait) = longest_wait(states).unwrap_or((0, Duration::ZERO));
        let policy = applied.indices().nth(position).unwrap_or(0);
        // The security event; inside the telemetry layer's span, whose fields (request id, trace
        // id) JSON logs carry beside it.
        if let Some(suppressed) = self.events.admit() {
            tracing::info!(
                target: SECURITY_TARGET,
                event = "rate_limited",
                reason = "quota_exceeded",
                status = 429,
                policy = self.policies[policy].name(),
                retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                suppressed,
                "request refused by a rate limit"
            );
        }
        let mut response = self.rejections[policy].response_retry_in(wait);
        if let Some(fields) = fields {
            fields.apply(response.headers_mut());
        }
        Admission::Reject(Box::new(response))
    }

    fn fields(&self, applied: Applied, states: &[PolicyState]) -> Fields {
        let policies = applied.indices().map(|i| &self.policies[i]);
        let policy_field = match applied.whole_rule {
            Some(rule) => self.rule(rule).policy_field.clone(),
            None => headers::policy_field(policies.clone()),
        };
        Fields::new(policies, states, policy_field, self.legacy_headers)
    }

    /// A backend failed: refuse with 503 if it fails closed, else serve the request unchecked
    /// and say so.
    pub(crate) fn backend_failed<B>(&self, applied: Applied, error: &BoxError) -> Admission<B> {
        if let Some(unavailable) = error.downcast_ref::<BackendUnavailable>() {
            return self.unavailable(applied, unavailable.retry_after());
        }
        if let Some(suppressed) = self.events.admit() {
            tracing::warn!(%error, suppressed, "rate-limit backend failed; serving the request unchecked");
        }
        for policy in applied.indices() {
            self.metrics[policy].backend_error.increment(1);
        }
        Admission::Admit(None)
    }

    /// The backend cannot decide and fails closed: 503 with `Retry-After` (observe-only
    /// serves the request).
    fn unavailable<B>(&self, applied: Applied, wait: Duration) -> Admission<B> {
        for policy in applied.indices() {
            self.metrics[policy].unavailable.increment(1);
        }
        if !self.mode.enforces() {
            return Admission::Admit(None);
        }
        Admission::Reject(Box::new(self.unavailable.response_retry_in(wait)))
    }
}

impl Applied {
    fn push(&mut self, policy: usize) {
        // At most 255 policies exist in practice; rules hold at most 8 (validated).
        if let (Ok(policy), Some(slot)) = (
            u8::try_from(policy),
            self.policies.get_mut(usize::from(self.len)),
        ) {
            *slot = policy;
            self.len += 1;
        }
    }
}

/// The longest wait among the refusing policies, and the position of that policy.
fn longest_wait(states: &[PolicyState]) -> Option<(usize, Duration)> {
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.limited)
        .max_by_key(|(_, s)| s.retry_after)
        .map(|(i, s)| (i, s.retry_after))
}

/// The rejection while a backend that fails closed cannot decide: 503, the client did nothing
/// wrong.
pub(crate) fn unavailable_rejection() -> Result<Rejection, palisade_core::ConfigError> {
    Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "rate_limit_unavailable")
        .title("Service Unavailable")
        .detail("Rate limits cannot be checked right now. Retry after the delay in Retry-After.")
        .retry_after(RetryAfter::new(Duration::from_secs(1)))
        .build()
}

/// The rejection of one policy: 429 with a problem body that names it.
pub(crate) fn rejection(policy: &str) -> Result<Rejection, palisade_core::ConfigError> {
    Rejection::builder(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
        .title("Too Many Requests")
        .detail(format!(
            "Rate limit {policy:?} exceeded. Retry after the delay in Retry-After."
        ))
        .extension("policy", policy.to_owned())
        .extension("violated-policies", vec![policy.to_owned()])
        .retry_after(RetryAfter::new(Duration::from_secs(1)))
        .build()
}
