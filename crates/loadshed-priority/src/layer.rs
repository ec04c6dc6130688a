//! [`LoadShedLayer`] and its builder.

use std::{
    borrow::Cow,
    sync::{Arc, atomic::AtomicU32},
    time::Duration,
};

use http::StatusCode;
use palisade_core::{ConfigError, OverloadState, Priority, Rejection, RetryAfter};
use tower_layer::Layer;

use crate::{
    classify::{Classifier, ClassifierFn, RequestInfo},
    config::{HeaderTrust, LoadShedConfig, PathMatch, RouteRule},
    curve::{FastRandom, RandomSource, part},
    metrics::Metrics,
    service::LoadShed,
    sustain::Sustain,
};

/// Classifies requests and sheds the least important first under overload; see the
/// [crate docs](crate). The state is created once, here, and shared by every clone.
#[derive(Clone)]
pub struct LoadShedLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) classifier: Classifier,
    pub(crate) overload: OverloadState,
    pub(crate) in_flight: AtomicU32,
    pub(crate) max_queue_depth: f64,
    pub(crate) threshold: f64,
    pub(crate) ceiling: f64,
    pub(crate) start: f64,
    /// Where `Critical`'s part of the band starts.
    pub(crate) critical_start: f64,
    /// How long the level has been in `Critical`'s part.
    pub(crate) sustain: Sustain,
    pub(crate) enforce: bool,
    /// One prepared rejection per class that can be shed, naming the class.
    pub(crate) rejections: [Rejection; 3],
    pub(crate) random: Box<dyn RandomSource>,
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for LoadShedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadShedLayer").finish_non_exhaustive()
    }
}

impl LoadShedLayer {
    /// A shedder with the [defaults](LoadShedConfig), reading [`OverloadState::global`].
    pub fn new() -> Self {
        // The defaults are valid (a unit test checks it).
        Self::from_config(LoadShedConfig::default())
            .unwrap_or_else(|e| unreachable!("default load shedding configuration: {e}"))
    }

    /// A shedder with `config`, reading [`OverloadState::global`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the invalid field.
    pub fn from_config(config: LoadShedConfig) -> Result<Self, ConfigError> {
        LoadShedBuilder::from(config).build()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> LoadShedBuilder {
        LoadShedBuilder::from(LoadShedConfig::default())
    }
}

impl Default for LoadShedLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadShedLayer {
    /// A client layer writing this layer's priority header on outgoing requests, so a downstream
    /// Palisade server classifies them the same way.
    pub fn propagation_layer(&self) -> crate::PropagatePriorityLayer {
        crate::PropagatePriorityLayer::with_header(self.shared.classifier.header().clone())
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed::new(inner, Arc::clone(&self.shared))
    }
}

/// Builds a [`LoadShedLayer`]; see [`LoadShedConfig`] for every default.
#[must_use]
pub struct LoadShedBuilder {
    config: LoadShedConfig,
    classifier: Option<ClassifierFn>,
    random: Option<Box<dyn RandomSource>>,
    overload: Option<OverloadState>,
}

/// A builder starting from `config`, for a configuration read from a file that still needs
/// runtime handles (a classifier, an overload state).
impl From<LoadShedConfig> for LoadShedBuilder {
    fn from(config: LoadShedConfig) -> Self {
        Self {
            config,
            classifier: None,
            random: None,
            overload: None,
        }
    }
}

impl std::fmt::Debug for LoadShedBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadShedBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LoadShedBuilder {
    /// Adds a path that is always `CriticalPlus` (health paths are there by default).
    pub fn critical_path(mut self, path: PathMatch) -> Self {
        self.config.critical_paths.push(path);
        self
    }

    /// Gives requests matching `path` the class `priority`.
    pub fn route(mut self, path: PathMatch, priority: Priority) -> Self {
        self.config.route_rules.push(RouteRule {
            matches: path,
            priority,
        });
        self
    }

    /// The priority header. Default `x-priority`.
    pub fn header(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.header = name.into();
        self
    }

    /// Maps a header value to a class (in addition to the defaults).
    pub fn header_value(mut self, value: impl Into<Cow<'static, str>>, priority: Priority) -> Self {
        self.config.header_values.push((value.into(), priority));
        self
    }

    /// Who may raise their class with the header. Default: nobody (lowering only).
    pub fn header_trust(mut self, trust: HeaderTrust) -> Self {
        self.config.header_trust = trust;
        self
    }

    /// Trusts peers in these CIDR ranges (with [`HeaderTrust::TrustedPeers`]).
    pub fn trusted_peers<I, T>(mut self, ranges: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.config.trusted_peers = ranges.into_iter().map(Into::into).collect();
        self
    }

    /// Trusts requests whose `header` carries `secret` (with [`HeaderTrust::SharedSecret`]).
    pub fn shared_secret(
        mut self,
        header: impl Into<Cow<'static, str>>,
        secret: impl Into<String>,
    ) -> Self {
        self.config.shared_secret_header = Some(header.into());
        self.config.shared_secret = Some(secret.into());
        self
    }

    /// A custom classifier, consulted after the header and before the default.
    pub fn classifier<F>(mut self, classify: F) -> Self
    where
        F: Fn(&RequestInfo<'_>) -> Option<Priority> + Send + Sync + 'static,
    {
        self.classifier = Some(Arc::new(classify));
        self
    }

    /// The class of unclassified requests. Default `Critical`.
    pub fn default_priority(mut self, priority: Priority) -> Self {
        self.config.default_priority = priority;
        self
    }

    /// Where shedding starts and where everything but `CriticalPlus` is shed. Default 0.5, 0.8.
    pub fn band(mut self, threshold: f64, ceiling: f64) -> Self {
        self.config.threshold = threshold;
        self.config.ceiling = ceiling;
        self
    }

    /// The shed probability at the start of each class's ramp. Default 0.1.
    pub fn shed_percentage(mut self, probability: f64) -> Self {
        self.config.shed_percentage = probability;
        self
    }

    /// How long the level must stay in `Critical`'s part of the band before `Critical` requests
    /// are shed; zero sheds them on the instantaneous level. Default 100 ms, at most 60 s.
    pub fn critical_sustain(mut self, interval: Duration) -> Self {
        self.config.critical_sustain = interval;
        self
    }

    /// In-flight requests through this layer that count as fully loaded. Default 100.
    pub fn max_queue_depth(mut self, depth: u32) -> Self {
        self.config.max_queue_depth = depth;
        self
    }

    palisade_core::retry_after_setters!("5 s");

    palisade_core::enforcement_setters!("count and log what would be shed, serve everything.");

    /// Read the overload level from `state` instead of [`OverloadState::global`].
    pub fn overload_state(mut self, state: OverloadState) -> Self {
        self.overload = Some(state);
        self
    }

    /// The random source of shedding decisions (deterministic in tests). Default: fast
    /// thread-local randomness.
    pub fn random_source(mut self, random: impl RandomSource) -> Self {
        self.random = Some(Box::new(random));
        self
    }

    /// Validates and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the invalid field.
    pub fn build(self) -> Result<LoadShedLayer, ConfigError> {
        let config = self.config;
        config.validate()?;
        let classifier = Classifier::compile(&config, self.classifier)?;
        let retry = RetryAfter::checked(config.retry_after, config.retry_after_jitter)?;
        let rejection = |priority: Priority| {
            Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "load_shed")
                .detail("The server is overloaded and shed this request by priority. Retry after the delay in Retry-After.")
                .extension("priority", priority.as_str())
                .retry_after(retry)
                .build()
        };
        let rejections = [
            rejection(Priority::Sheddable)?,
            rejection(Priority::SheddablePlus)?,
            rejection(Priority::Critical)?,
        ];
        Ok(LoadShedLayer {
            shared: Arc::new(Shared {
                classifier,
                overload: self
                    .overload
                    .unwrap_or_else(|| OverloadState::global().clone()),
                in_flight: AtomicU32::new(0),
                max_queue_depth: f64::from(config.max_queue_depth),
                threshold: config.threshold,
                ceiling: config.ceiling,
                start: config.shed_percentage,
                critical_start: part(Priority::Critical, config.threshold, config.ceiling)
                    .map_or(config.ceiling, |(low, _)| low),
                sustain: Sustain::new(config.critical_sustain),
                enforce: config.mode.enforces(),
                rejections,
                random: self.random.unwrap_or_else(|| Box::new(FastRandom)),
                metrics: Metrics::new(config.mode),
            }),
        })
    }
}
