//! Configuration: plain data with documented defaults, and validation that names the key at
//! fault.

use std::{collections::BTreeMap, time::Duration};

use http::HeaderName;
use palisade_core::{Cidr, ConfigError, EnforcementMode, TrustedPeers, check_name};

use crate::{
    backend::MAX_POLICIES_PER_RULE, client_ip::ForwardedHeader, key::KeySource, remote::RedisConfig,
};

/// The longest period a policy may have (a leap year), so TAT arithmetic in nanoseconds never
/// comes near overflow.
const MAX_PERIOD_SECS: u64 = 366 * 24 * 3600;
/// The furthest a key's TAT may run ahead of now: 100 years, well inside `u64` nanoseconds.
const MAX_TOLERANCE_NANOS: u128 = 100 * 366 * 24 * 3600 * 1_000_000_000;
/// The largest burst a policy may have.
const MAX_BURST: u32 = 1_000_000_000;

/// One named quota: `rate` requests per `period`, bursts of `burst`, counted per `key`.
///
/// Constructors say what they mean: [`per_minute(60)`](Self::per_minute) is sixty requests per
/// minute (not one request per sixty minutes, a common misreading of other crates' APIs).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `rate` | 60 | requests per period |
/// | `period` | 60 s | the window `w` of the quota; whole seconds, 1 s to 366 days |
/// | `burst` | `rate` | requests admitted at once from a fresh key; after that one per `period / rate` |
/// | `key` | `client_ip` | what requests are counted by ([`KeySource`]) |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Requests per period.
    pub rate: u32,
    /// The period, in whole seconds.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub period: Duration,
    /// The largest burst; `None` means `rate`.
    pub burst: Option<u32>,
    /// What requests are counted by.
    pub key: KeySource,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self::per_minute(60)
    }
}

impl PolicyConfig {
    /// `rate` requests per `period`, bursts of `rate`, keyed by client address.
    pub fn new(rate: u32, period: Duration) -> Self {
        Self {
            rate,
            period,
            burst: None,
            key: KeySource::ClientIp,
        }
    }

    /// `n` requests per second.
    pub fn per_second(n: u32) -> Self {
        Self::new(n, Duration::from_secs(1))
    }

    /// `n` requests per minute.
    pub fn per_minute(n: u32) -> Self {
        Self::new(n, Duration::from_secs(60))
    }

    /// `n` requests per hour.
    pub fn per_hour(n: u32) -> Self {
        Self::new(n, Duration::from_secs(3600))
    }

    /// `n` requests per day.
    pub fn per_day(n: u32) -> Self {
        Self::new(n, Duration::from_secs(86_400))
    }

    /// Admits up to `burst` requests at once (default: the rate).
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Counts requests by `key` (default: client address).
    #[must_use]
    pub fn key(mut self, key: KeySource) -> Self {
        self.key = key;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.rate == 0 {
            return Err(ConfigError::new("rate", "must be at least 1"));
        }
        let secs = self.period.as_secs();
        if self.period.subsec_nanos() != 0 || secs == 0 || secs > MAX_PERIOD_SECS {
            return Err(ConfigError::new(
                "period",
                format!(
                    "must be a whole number of seconds from 1 to {MAX_PERIOD_SECS} (the \
                     RateLimit-Policy window is whole seconds), got {:?}",
                    self.period
                ),
            ));
        }
        if let Some(burst) = self.burst
            && !(1..=MAX_BURST).contains(&burst)
        {
            return Err(ConfigError::new(
                "burst",
                format!("must be from 1 to {MAX_BURST}, got {burst}"),
            ));
        }
        // `burst × period / rate` is how far ahead of now a key may run; in nanoseconds it must
        // stay far from u64::MAX, where saturating arithmetic would stop counting.
        let burst = u128::from(self.burst.unwrap_or(self.rate));
        let tolerance = self.period.as_nanos() / u128::from(self.rate) * burst;
        if tolerance > MAX_TOLERANCE_NANOS {
            return Err(ConfigError::new(
                "burst",
                "burst × period / rate must be at most 100 years",
            ));
        }
        if let KeySource::Header(name) = &self.key {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::new("key.header", format!("{name:?} is not a header name"))
            })?;
        }
        Ok(())
    }
}

/// Which policies apply to one route, replacing `default_policies` there (an empty list exempts
/// the route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RuleConfig {
    /// The route template as written in the router, such as `/api/items/{id}`; matched against
    /// axum's `MatchedPath`, never the raw path.
    pub route: String,
    /// Policy names, checked together (at most 8).
    pub policies: Vec<String>,
}

impl RuleConfig {
    /// Applies `policies` to `route`.
    pub fn new<I, P>(route: impl Into<String>, policies: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        Self {
            route: route.into(),
            policies: policies.into_iter().map(Into::into).collect(),
        }
    }
}

/// Configuration of the rate-limit layer ([`RateLimitLayer`](crate::RateLimitLayer)).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `policies` | none | named quotas ([`PolicyConfig`]); at least one |
/// | `default_policies` | `[]` | policies checked on routes without a rule |
/// | `rules` | `[]` | per-route policy lists ([`RuleConfig`]), by route template |
/// | `trusted_proxies` | `[]` | CIDR ranges whose forwarded header is believed; empty: the TCP peer is the client |
/// | `forwarded_header` | `x_forwarded_for` | which header trusted proxies write (`forwarded` for RFC 7239) |
/// | `ipv6_prefix` | 64 | IPv6 clients share a key per prefix of this length (1 to 128) |
/// | `max_keys` | 100 000 | keys each policy keeps in memory, a hard cap |
/// | `headers` | true | send `RateLimit-Policy` and `RateLimit` on every response |
/// | `legacy_headers` | false | also send `X-RateLimit-Limit/Remaining/Reset` |
/// | `mode` | `enforce` | `observe_only` counts and logs would-be refusals and serves them |
/// | `redis` | none | share the limits of every replica through Redis ([`RedisConfig`]; the `redis` feature); an empty `url` leaves it off |
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Named quotas.
    pub policies: BTreeMap<String, PolicyConfig>,
    /// Policies checked on routes without a rule.
    pub default_policies: Vec<String>,
    /// Per-route policy lists.
    pub rules: Vec<RuleConfig>,
    /// Trusted proxy ranges, in CIDR notation.
    pub trusted_proxies: Vec<String>,
    /// The header trusted proxies write.
    pub forwarded_header: ForwardedHeader,
    /// The IPv6 prefix length that groups clients.
    pub ipv6_prefix: u8,
    /// The most keys each policy keeps.
    pub max_keys: usize,
    /// Whether to send the draft `RateLimit` fields.
    pub headers: bool,
    /// Whether to send the legacy `X-RateLimit-*` headers.
    pub legacy_headers: bool,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
    /// The shared Redis backend; `None` keeps the state in this process.
    pub redis: Option<RedisConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            policies: BTreeMap::new(),
            default_policies: Vec::new(),
            rules: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
            max_keys: 100_000,
            headers: true,
            legacy_headers: false,
            mode: EnforcementMode::Enforce,
            redis: None,
        }
    }
}

/// The validated parts the layer is built from.
pub(crate) struct Plan {
    /// Policies in name order, with their validated burst.
    pub(crate) policies: Vec<(String, PolicyConfig, u32)>,
    pub(crate) default_rule: Vec<usize>,
    pub(crate) rules: Vec<(String, Vec<usize>)>,
    pub(crate) trusted: TrustedPeers,
}

impl RateLimitConfig {
    /// The Redis backend, when one is configured: a `redis` section whose `url` is empty is
    /// none, so a deployment can set the other fields and leave the URL to an optional secret.
    pub fn shared_store(&self) -> Option<&RedisConfig> {
        self.redis
            .as_ref()
            .filter(|redis| !redis.url.trim().is_empty())
    }

    fn validate_redis(&self) -> Result<(), ConfigError> {
        let Some(redis) = self.shared_store() else {
            return Ok(());
        };
        redis.validate().map_err(|e| e.within("redis"))?;
        if cfg!(feature = "redis") {
            Ok(())
        } else {
            Err(ConfigError::new(
                "redis",
                "this build has no Redis backend: enable the `redis` feature of \
                 palisade-rate-limit (or of palisade)",
            ))
        }
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: no policies, a bad policy name, a zero rate or burst, a
    /// period that is not whole seconds, a bad header name, an unknown or repeated policy in a
    /// rule, more than 8 policies in a rule, a repeated or relative route, no policy applying
    /// anywhere, a bad CIDR, an IPv6 prefix outside 1 to 128, a zero key cap, or a bad `redis`
    /// section (or one in a build without the `redis` feature).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.plan().map(|_| ())
    }

    /// Whether any policy is defined: a stack that reads this section from a file builds the
    /// layer only then, so a service without a `[rate_limit]` section runs unlimited.
    pub fn is_configured(&self) -> bool {
        !self.policies.is_empty()
    }

    pub(crate) fn plan(&self) -> Result<Plan, ConfigError> {
        if self.policies.is_empty() {
            return Err(ConfigError::new("policies", "define at least one policy"));
        }
        if self.policies.len() > 255 {
            return Err(ConfigError::new("policies", "at most 255 policies"));
        }
        let mut policies = Vec::with_capacity(self.policies.len());
        for (name, policy) in &self.policies {
            check_name(name).map_err(|e| {
                ConfigError::new(format!("policies.{name}"), e.problem().to_owned())
            })?;
            policy
                .validate()
                .map_err(|e| e.within(&format!("policies.{name}")))?;
            policies.push((
                name.clone(),
                policy.clone(),
                policy.burst.unwrap_or(policy.rate),
            ));
        }
        let resolve = |key: &str, names: &[String]| -> Result<Vec<usize>, ConfigError> {
            if names.len() > MAX_POLICIES_PER_RULE {
                return Err(ConfigError::new(
                    key.to_owned(),
                    format!("at most {MAX_POLICIES_PER_RULE} policies apply to one request"),
                ));
            }
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let index = policies
                    .iter()
                    .position(|(n, _, _)| n == name)
                    .ok_or_else(|| {
                        ConfigError::new(key.to_owned(), format!("unknown policy {name:?}"))
                    })?;
                if out.contains(&index) {
                    return Err(ConfigError::new(
                        key.to_owned(),
                        format!("policy {name:?} is listed twice"),
                    ));
                }
                out.push(index);
            }
            Ok(out)
        };
        let default_rule = resolve("default_policies", &self.default_policies)?;
        let mut rules: Vec<(String, Vec<usize>)> = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let key = format!("rules[{i}]");
            if !rule.route.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{key}.route"),
                    format!(
                        "{:?} must be a route template starting with '/'",
                        rule.route
                    ),
                ));
            }
            if rules.iter().any(|(route, _)| *route == rule.route) {
                return Err(ConfigError::new(
                    format!("{key}.route"),
                    format!("{:?} has two rules", rule.route),
                ));
            }
            rules.push((
                rule.route.clone(),
                resolve(&format!("{key}.policies"), &rule.policies)?,
            ));
        }
        if default_rule.is_empty() && rules.iter().all(|(_, p)| p.is_empty()) {
            return Err(ConfigError::new(
                "default_policies",
                "no policy applies to any request: list policies here or in rules",
            ));
        }
        let trusted = self
            .trusted_proxies
            .iter()
            .map(|text| {
                Cidr::parse(text)
                    .map_err(|e| ConfigError::new("trusted_proxies", e.problem().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(ConfigError::new(
                "ipv6_prefix",
                format!("must be from 1 to 128, got {}", self.ipv6_prefix),
            ));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        self.validate_redis()?;
        Ok(Plan {
            policies,
            default_rule,
            rules,
            trusted: TrustedPeers::new(trusted),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RateLimitConfig {
        let mut config = RateLimitConfig::default();
        config
            .policies
            .insert("per_ip".into(), PolicyConfig::per_minute(60));
        config.default_policies = vec!["per_ip".into()];
        config
    }

    fn key_of(edit: impl FnOnce(&mut RateLimitConfig)) -> String {
        let mut config = base();
        edit(&mut config);
        config.validate().unwrap_err().key().to_owned()
    }

    fn policy(edit: impl FnOnce(&mut PolicyConfig)) -> impl FnOnce(&mut RateLimitConfig) {
        move |c| edit(c.policies.get_mut("per_ip").unwrap())
    }

    #[test]
    fn the_base_is_valid() {
        base().validate().unwrap();
    }

    #[test]
    fn nonsense_is_an_error_naming_the_key() {
        assert_eq!(key_of(|c| c.policies.clear()), "policies");
        assert_eq!(key_of(policy(|p| p.rate = 0)), "policies.per_ip.rate");
        assert_eq!(
            key_of(policy(|p| p.period = Duration::ZERO)),
            "policies.per_ip.period"
        );
        assert_eq!(
            key_of(policy(|p| p.period = Duration::from_millis(1500))),
            "policies.per_ip.period"
        );
        assert_eq!(
            key_of(policy(|p| p.period = Duration::from_secs(400 * 86_400))),
            "policies.per_ip.period"
        );
        assert_eq!(
            key_of(policy(|p| p.burst = Some(0))),
            "policies.per_ip.burst"
        );
        assert_eq!(
            key_of(policy(|p| {
                p.rate = 1;
                p.period = Duration::from_secs(3600);
                p.burst = Some(1_000_000_000);
            })),
            "policies.per_ip.burst"
        );
        assert_eq!(
            key_of(policy(|p| p.key = KeySource::Header("bad header".into()))),
            "policies.per_ip.key.header"
        );
        assert_eq!(
            key_of(|c| {
                let p = c.policies.remove("per_ip").unwrap();
                c.policies.insert("bad name".into(), p);
            }),
            "policies.bad name"
        );
        assert_eq!(
            key_of(|c| c.default_policies = vec!["nope".into()]),
            "default_policies"
        );
        assert_eq!(
            key_of(|c| c.default_policies = vec!["per_ip".into(), "per_ip".into()]),
            "default_policies"
        );
        assert_eq!(key_of(|c| c.default_policies.clear()), "default_policies");
        assert_eq!(
            key_of(|c| c.rules.push(RuleConfig::new("/login", ["missing"]))),
            "rules[0].policies"
        );
        assert_eq!(
            key_of(|c| c.rules.push(RuleConfig::new("login", ["per_ip"]))),
            "rules[0].route"
        );
        assert_eq!(
            key_of(|c| {
                c.rules.push(RuleConfig::new("/a", ["per_ip"]));
                c.rules.push(RuleConfig::new("/a", ["per_ip"]));
            }),
            "rules[1].route"
        );
        assert_eq!(
            key_of(|c| c.rules.push(RuleConfig::new("/a", vec!["per_ip"; 9]))),
            "rules[0].policies"
        );
        assert_eq!(
            key_of(|c| c.trusted_proxies = vec!["10.0.0.1/8".into()]),
            "trusted_proxies"
        );
        assert_eq!(key_of(|c| c.ipv6_prefix = 0), "ipv6_prefix");
        assert_eq!(key_of(|c| c.ipv6_prefix = 129), "ipv6_prefix");
        assert_eq!(key_of(|c| c.max_keys = 0), "max_keys");
    }

    #[test]
    fn rules_alone_are_enough() {
        let mut config = base();
        config.default_policies.clear();
        config.rules.push(RuleConfig::new("/login", ["per_ip"]));
        config.validate().unwrap();
    }
}
