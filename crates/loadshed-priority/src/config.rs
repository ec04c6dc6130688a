//! Configuration: plain data with documented defaults, a builder, and validation.

use std::{borrow::Cow, time::Duration};

use palisade_core::{ConfigError, EnforcementMode, Priority};

/// Which requests a path rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum PathMatch {
    /// The request path equals this.
    Exact(Cow<'static, str>),
    /// The request path starts with this.
    Prefix(Cow<'static, str>),
    /// The axum route template that matched (`/api/items/{id}`); needs the layer applied with
    /// `Router::layer` so that `MatchedPath` is known.
    Route(Cow<'static, str>),
}

/// A class for the requests a [`PathMatch`] matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct RouteRule {
    /// Which requests.
    #[cfg_attr(feature = "serde", serde(rename = "match"))]
    pub matches: PathMatch,
    /// Their class.
    pub priority: Priority,
}

/// Whose priority header is believed.
///
/// Anyone may *lower* their own class (a batch client marking itself sheddable is helping); only
/// trusted callers may *raise* it above the default. A header that is missing, unknown or
/// malformed is ignored and can never raise a class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum HeaderTrust {
    /// Ignore the header.
    Never,
    /// The header may only lower a request's class (the default): safe at the edge.
    #[default]
    LowerOnly,
    /// Peers in `trusted_peers` (the TCP peer, from `ConnectInfo`) may also raise it.
    TrustedPeers,
    /// Requests carrying `shared_secret` may also raise it (for callers behind a proxy).
    SharedSecret,
    /// Anyone may raise it: only behind something that strips the header from outside traffic.
    Always,
}

/// Configuration of the [`LoadShedLayer`](crate::LoadShedLayer).
///
/// **Classification**, first match wins: `critical_paths` (class `CriticalPlus`), `route_rules`,
/// the priority header (subject to `header_trust`), the `classifier` closure, then
/// `default_priority`.
///
/// **Shedding.** The overload level is the higher of the shared
/// [`OverloadState`](palisade_core::OverloadState) (published by the concurrency limiter) and this layer's own in-flight count
/// over `max_queue_depth`; a limiter that reports "overloaded" counts as the ceiling. Between
/// `threshold` and `ceiling` the band is split in three: `Sheddable` is shed with a probability
/// rising from `shed_percentage` to 100% across the first third, `SheddablePlus` from 0 to 100%
/// across the second, `Critical` across the last, but only once the level has stayed in that last
/// part for `critical_sustain` (or a limiter reports "overloaded"). `CriticalPlus` is never shed by
/// this layer.
///
/// Why the wait: under a steady overload the in-flight level is a sawtooth (completions drop it,
/// admissions push it back up) whose peaks reach `Critical`'s part for a few milliseconds even
/// while shedding the lower classes keeps the server within capacity. As in `CoDel`, a queue that
/// drains within the interval is a burst to absorb; one that stays is overload. Set it above the
/// typical request duration.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `critical_paths` | prefix `/health/`, exact `/livez`, `/readyz`, `/healthz` | always `CriticalPlus`: probes are never shed |
/// | `route_rules` | none | classes by path or route template |
/// | `header` | `x-priority` | the priority header, read and propagated |
/// | `header_values` | see [`default_header_values`] | header value to class |
/// | `header_trust` | lower only | who may raise their class with the header |
/// | `trusted_peers` | none | CIDR ranges for [`HeaderTrust::TrustedPeers`] |
/// | `shared_secret_header`, `shared_secret` | none | for [`HeaderTrust::SharedSecret`] |
/// | `default_priority` | `Critical` | the class of requests nothing else classified |
/// | `threshold` | 0.5 | the level where `Sheddable` starts to be shed |
/// | `ceiling` | 0.8 | the level where `Critical` is shed entirely (the limiter's default high-water mark) |
/// | `shed_percentage` | 0.1 | the shed probability of `Sheddable` at the threshold |
/// | `critical_sustain` | 100 ms | how long the level must stay in `Critical`'s part before `Critical` is shed; zero sheds it at once; at most 60 s |
/// | `max_queue_depth` | 100 | requests in flight through this layer that count as level 1.0 |
/// | `retry_after` | 5 s | `Retry-After` of shed requests |
/// | `retry_after_jitter` | 0 s | random extra delay added to `Retry-After` |
/// | `mode` | enforce | `ObserveOnly` classifies, decides and counts, but sheds nothing |
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct LoadShedConfig {
    /// Paths that are always `CriticalPlus`.
    pub critical_paths: Vec<PathMatch>,
    /// Classes by path or route.
    pub route_rules: Vec<RouteRule>,
    /// The priority header.
    pub header: Cow<'static, str>,
    /// Header values (ASCII case-insensitive, `-` and `_` alike) and their classes.
    pub header_values: Vec<(Cow<'static, str>, Priority)>,
    /// Who may raise their class with the header.
    pub header_trust: HeaderTrust,
    /// CIDR ranges of trusted peers.
    pub trusted_peers: Vec<String>,
    /// The header carrying the shared secret.
    pub shared_secret_header: Option<Cow<'static, str>>,
    /// The shared secret.
    pub shared_secret: Option<String>,
    /// The class of unclassified requests.
    pub default_priority: Priority,
    /// Where shedding starts.
    pub threshold: f64,
    /// Where everything but `CriticalPlus` is shed.
    pub ceiling: f64,
    /// The shed probability at the start of each class's ramp.
    pub shed_percentage: f64,
    /// How long the level must stay in `Critical`'s part of the band before `Critical` requests
    /// are shed (`CoDel`'s interval); zero sheds them on the instantaneous level.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub critical_sustain: Duration,
    /// This layer's own in-flight count that counts as fully loaded.
    pub max_queue_depth: u32,
    /// `Retry-After` of shed requests.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after: Duration,
    /// Random extra `Retry-After`, so shed clients do not return in lockstep.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub retry_after_jitter: Duration,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
}

/// The default `critical_sustain`: `CoDel`'s interval, well above a typical request's duration.
const DEFAULT_CRITICAL_SUSTAIN: Duration = Duration::from_millis(100);

/// The longest `critical_sustain` accepted: beyond it `Critical` would be shed only long after
/// the server had been overloaded, which is a configuration mistake.
const MAX_CRITICAL_SUSTAIN: Duration = Duration::from_secs(60);

/// The default header values: the class names, plus the original plan's `high` (= `critical`)
/// and `low` (= `sheddable`).
pub fn default_header_values() -> Vec<(Cow<'static, str>, Priority)> {
    let mut values: Vec<_> = Priority::ALL
        .iter()
        .map(|p| (Cow::Borrowed(p.as_str()), *p))
        .collect();
    values.push((Cow::Borrowed("high"), Priority::Critical));
    values.push((Cow::Borrowed("low"), Priority::Sheddable));
    values
}

impl Default for LoadShedConfig {
    fn default() -> Self {
        Self {
            critical_paths: vec![
                PathMatch::Prefix(Cow::Borrowed("/health/")),
                PathMatch::Exact(Cow::Borrowed("/livez")),
                PathMatch::Exact(Cow::Borrowed("/readyz")),
                PathMatch::Exact(Cow::Borrowed("/healthz")),
            ],
            route_rules: Vec::new(),
            header: Cow::Borrowed("x-priority"),
            header_values: default_header_values(),
            header_trust: HeaderTrust::LowerOnly,
            trusted_peers: Vec::new(),
            shared_secret_header: None,
            shared_secret: None,
            default_priority: Priority::Critical,
            threshold: 0.5,
            ceiling: 0.8,
            shed_percentage: 0.1,
            critical_sustain: DEFAULT_CRITICAL_SUSTAIN,
            max_queue_depth: 100,
            retry_after: Duration::from_secs(5),
            mode: EnforcementMode::Enforce,
            retry_after_jitter: Duration::ZERO,
        }
    }
}

impl LoadShedConfig {
    /// Checks the shedding curve, `critical_sustain` and the queue depth (the header, peers and secret are checked
    /// when the layer is built, where they are compiled).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !unit(self.threshold) || !unit(self.ceiling) || self.threshold >= self.ceiling {
            return Err(ConfigError::new(
                "threshold",
                format!(
                    "need 0 <= threshold < ceiling <= 1, got {} and {}",
                    self.threshold, self.ceiling
                ),
            ));
        }
        if !unit(self.shed_percentage) {
            return Err(ConfigError::new(
                "shed_percentage",
                "must be between 0 and 1",
            ));
        }
        if self.critical_sustain > MAX_CRITICAL_SUSTAIN {
            return Err(ConfigError::new(
                "critical_sustain",
                format!(
                    "must be at most {} s, got {:?}",
                    MAX_CRITICAL_SUSTAIN.as_secs(),
                    self.critical_sustain
                ),
            ));
        }
        if self.max_queue_depth == 0 {
            return Err(ConfigError::new("max_queue_depth", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_sustain_defaults_to_100_ms_and_is_bounded() {
        let config = LoadShedConfig::default();
        assert_eq!(config.critical_sustain, Duration::from_millis(100));
        assert!(config.validate().is_ok());
        let zero = LoadShedConfig {
            critical_sustain: Duration::ZERO,
            ..LoadShedConfig::default()
        };
        assert!(zero.validate().is_ok(), "zero sheds Critical at once");
        let long = LoadShedConfig {
            critical_sustain: Duration::from_secs(61),
            ..LoadShedConfig::default()
        };
        assert_eq!(long.validate().unwrap_err().key(), "critical_sustain");
    }
}
