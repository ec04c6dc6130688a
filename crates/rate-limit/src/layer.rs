//! [`RateLimitLayer`] and its builder.

use std::{collections::HashMap, fmt, sync::Arc};

use palisade_core::ConfigError;
use tokio::time::Instant;
use tower_layer::Layer;

use crate::{
    backend::RateLimitBackend,
    client_ip::{ClientIpResolver, ForwardedHeader},
    config::{PolicyConfig, RateLimitConfig, RuleConfig},
    headers,
    key::{Extractor, KeyExtractor, KeySource},
    limiter::{self, Backend, Limiter, Rule},
    metrics::{self, PolicyMetrics, StoreMetrics},
    policy::Policy,
    remote::{BackendState, RedisConfig},
    service::RateLimit,
    store::{LocalStore, PolicyStore},
};

/// Limits request rates per key with GCRA; see the [crate docs](crate).
///
/// The state (the key store, counters, prebuilt rejections) is created once, here: every service
/// this layer produces, on every route and connection, shares it, and so do clones of the layer.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("policies", &self.limiter.policies)
            .field("mode", &self.limiter.mode)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A builder with no policies yet.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder {
            config: RateLimitConfig::default(),
            extractors: Vec::new(),
            backend: None,
        }
    }

    /// The layer described by `config`: state in this process, or in Redis when
    /// `config.redis` is set.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see [`RateLimitConfig::validate`]).
    // By value, like every Palisade layer's `from_config`: the configuration is data handed over.
    #[allow(clippy::needless_pass_by_value)]
    pub fn from_config(config: RateLimitConfig) -> Result<Self, ConfigError> {
        Self::build(&config, Vec::new(), None)
    }

    /// The policies, in name order.
    pub fn policies(&self) -> &[Policy] {
        &self.limiter.policies
    }

    /// The keys the in-memory store holds for `policy` (0 with another backend or an unknown
    /// name).
    pub fn keys(&self, policy: &str) -> usize {
        let Backend::Local(store) = &self.limiter.backend else {
            return 0;
        };
        self.limiter
            .policies
            .iter()
            .position(|p| p.name() == policy)
            .map_or(0, |i| store.policy(i).len())
    }

    /// Where the limits are decided right now: [`BackendState::Local`] for the in-memory
    /// store, and for Redis whether it is reachable. Readiness checks report it.
    pub fn backend_state(&self) -> BackendState {
        match &self.limiter.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.state(),
            Backend::Remote(_) => BackendState::Shared,
            Backend::Local(_) => BackendState::Local,
        }
    }

    fn build(
        config: &RateLimitConfig,
        custom: Vec<(String, Arc<dyn KeyExtractor>)>,
        backend: Option<Arc<dyn RateLimitBackend>>,
    ) -> Result<Self, ConfigError> {
        let plan = config.plan()?;
        metrics::describe();
        let mut policies = Vec::with_capacity(plan.policies.len());
        let mut extractors = Vec::with_capacity(plan.policies.len());
        let mut policy_metrics = Vec::with_capacity(plan.policies.len());
        let mut rejections = Vec::with_capacity(plan.policies.len());
        for (name, policy, burst) in &plan.policies {
            policies.push(Policy::new(name, policy.rate, policy.period, *burst));
            extractors.push(match &policy.key {
                KeySource::ClientIp => Extractor::ClientIp,
                KeySource::Header(header) => Extractor::Header(
                    http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        ConfigError::new(format!("policies.{name}.key.header"), "not a header name")
                    })?,
                ),
                KeySource::User => Extractor::User,
                KeySource::Route => Extractor::Route,
                KeySource::Global => Extractor::Global,
                KeySource::ClientCertificate => Extractor::ClientCertificate,
            });
            policy_metrics.push(PolicyMetrics::new(name, config.mode));
            rejections.push(limiter::rejection(name)?);
        }
        for (name, extractor) in custom {
            let index = plan
                .policies
                .iter()
                .position(|(n, _, _)| *n == name)
                .ok_or_else(|| {
                    ConfigError::new("key_extractor", format!("unknown policy {name:?}"))
                })?;
            extractors[index] = Extractor::Custom(extractor);
        }
        let rule = |indices: &[usize]| Rule {
            policy_field: headers::policy_field(indices.iter().map(|&i| &policies[i])),
            policies: indices.into(),
        };
        let default_rule = rule(&plan.default_rule);
        let rules: Box<[Rule]> = plan.rules.iter().map(|(_, p)| rule(p)).collect();
        let routes: HashMap<Box<str>, usize> = plan
            .rules
            .iter()
            .enumerate()
            .map(|(i, (route, _))| (route.as_str().into(), i))
            .collect();
        let backend = match (backend, config.shared_store()) {
            (Some(backend), _) => Backend::Remote(backend),
            #[cfg(feature = "redis")]
            (None, Some(redis)) => {
                let redis = Arc::new(crate::remote::RedisBackend::new(
                    redis,
                    &policies,
                    config.max_keys,
                )?);
                Backend::Redis(redis)
            }
            #[cfg(not(feature = "redis"))]
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "redis",
                    "this build has no Redis backend: enable the `redis` feature",
                ));
            }
            (None, None) => Backend::Local(LocalStore::new(
                policies
                    .iter()
                    .map(|p| PolicyStore::new(p.gcra, config.max_keys, StoreMetrics::new(p.name())))
                    .collect(),
            )),
        };
        Ok(Self {
            limiter: Arc::new(Limiter {
                policies: policies.into(),
                extractors: extractors.into(),
                metrics: policy_metrics.into(),
                rejections: rejections.into(),
                unavailable: limiter::unavailable_rejection()?,
                default_rule,
                rules,
                routes,
                resolver: ClientIpResolver::new(plan.trusted, config.forwarded_header),
                ipv6_prefix: config.ipv6_prefix,
                backend,
                headers: config.headers,
                legacy_headers: config.legacy_headers,
                mode: config.mode,
                epoch: Instant::now(),
                events: palisade_core::EventLimiter::default(),
            }),
        })
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.limiter))
    }
}

/// Builds a [`RateLimitLayer`]; every setter documents its default.
#[must_use]
pub struct RateLimitBuilder {
    config: RateLimitConfig,
    extractors: Vec<(String, Arc<dyn KeyExtractor>)>,
    backend: Option<Arc<dyn RateLimitBackend>>,
}

impl fmt::Debug for RateLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("config", &self.config)
            .field(
                "key_extractors",
                &self.extractors.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("custom_backend", &self.backend.is_some())
            .finish()
    }
}

impl RateLimitBuilder {
    /// Defines the policy `name` and checks it on every route without a rule.
    pub fn policy(mut self, name: impl Into<String>, policy: PolicyConfig) -> Self {
        let name = name.into();
        self.config.default_policies.push(name.clone());
        self.config.policies.insert(name, policy);
        self
    }

    /// Defines the policy `name` for use in [`rule`](Self::rule)s only.
    pub fn define_policy(mut self, name: impl Into<String>, policy: PolicyConfig) -> Self {
        self.config.policies.insert(name.into(), policy);
        self
    }

    /// Checks `policies` (and not the defaults) on the route with this template, as written in
    /// the router (`/api/items/{id}`). An empty list exempts the route.
    pub fn rule<I, P>(mut self, route: impl Into<String>, policies: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.config.rules.push(RuleConfig::new(route, policies));
        self
    }

    /// Counts requests of policy `name` by the key `extractor` computes (a closure
    /// `Fn(&RequestInfo<'_>) -> Option<Key>` or a [`KeyExtractor`]), instead of its
    /// [`KeySource`].
    pub fn key_extractor(
        mut self,
        policy: impl Into<String>,
        extractor: impl KeyExtractor,
    ) -> Self {
        self.extractors.push((policy.into(), Arc::new(extractor)));
        self
    }

    /// Believes the forwarded header of peers in these CIDR ranges (`10.0.0.0/8`). Default:
    /// none; the TCP peer is the client.
    pub fn trusted_proxies<I, S>(mut self, ranges: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config
            .trusted_proxies
            .extend(ranges.into_iter().map(Into::into));
        self
    }

    /// The header trusted proxies write. Default `X-Forwarded-For`.
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.config.forwarded_header = header;
        self
    }

    /// IPv6 clients share a key per prefix of this length. Default 64.
    pub fn ipv6_prefix(mut self, prefix: u8) -> Self {
        self.config.ipv6_prefix = prefix;
        self
    }

    /// The most keys each policy keeps in memory. Default 100 000.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.config.max_keys = max;
        self
    }

    /// Whether every response carries `RateLimit-Policy` and `RateLimit`. Default true.
    pub fn headers(mut self, enabled: bool) -> Self {
        self.config.headers = enabled;
        self
    }

    /// Whether responses also carry `X-RateLimit-Limit/Remaining/Reset`. Default false.
    pub fn legacy_headers(mut self, enabled: bool) -> Self {
        self.config.legacy_headers = enabled;
        self
    }

    palisade_core::enforcement_setters!(
        "count and log would-be refusals, serve every request (and send no fields)."
    );

    /// Shares the limits of every replica through Redis ([`RedisConfig`]; the `redis` feature).
    /// Default: none, the state stays in this process.
    pub fn redis(mut self, redis: RedisConfig) -> Self {
        self.config.redis = Some(redis);
        self
    }

    /// Keeps the state in `backend` instead of this process's memory.
    pub fn backend(mut self, backend: impl RateLimitBackend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`RateLimitLayer::from_config`], and for a key extractor naming an unknown policy.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        RateLimitLayer::build(&self.config, self.extractors, self.backend)
    }
}
