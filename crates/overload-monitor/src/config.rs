//! Configuration: [`OverloadMonitorConfig`] (plain data, the `[overload]` section) and
//! [`OverloadMonitorBuilder`].

use std::{fmt, path::PathBuf, time::Duration};

use palisade_core::{ConfigError, EnforcementMode, OverloadState};

use crate::{
    fds::{FdMonitor, InProcessCount},
    lag::LagMonitor,
    memory::{MemoryMonitor, MemorySource},
    metrics::action_gauges,
    monitor::{Monitor, OverloadMonitor, Published, Watched},
    pressure::Thresholds,
};

/// `[overload.memory]`: the container's working set against its limit.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `enabled` | false | watch memory |
/// | `warn`, `degrade`, `critical`, `resume`, `dwell` | 0.80, 0.90, 0.95, 0.80, 1 s | see [`Thresholds`] |
/// | `max_rss` | none | bytes of this process's RSS that count as full: a budget inside a larger container, or the measure where it has no limit (the worse of the two counts) |
/// | `cgroup_dir` | detected | a cgroup directory to read instead (v2 if it has `memory.max`, else v1) |
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Watch memory.
    pub enabled: bool,
    /// The levels.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub thresholds: Thresholds,
    /// RSS bytes of this process that count as full (checked beside the container's limit).
    pub max_rss: Option<u64>,
    /// A cgroup directory to read instead of the detected one.
    pub cgroup_dir: Option<PathBuf>,
}

/// `[overload.fds]`: open file descriptors against the soft `RLIMIT_NOFILE`.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `enabled` | false | watch descriptors |
/// | `warn`, `degrade`, `critical`, `resume`, `dwell` | 0.80, 0.90, 0.95, 0.80, 1 s | see [`Thresholds`] |
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct FdConfig {
    /// Watch descriptors.
    pub enabled: bool,
    /// The levels.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub thresholds: Thresholds,
}

/// `[overload.lag]`: how late a periodic task on the runtime wakes.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `enabled` | false | watch the runtime |
/// | `max_lag` | 0.1 s | the lateness that counts as full |
/// | `probe_interval` | 0.05 s | how often the probe sleeps and measures |
/// | `warn`, `degrade`, `critical`, `resume`, `dwell` | 0.80, 0.90, 0.95, 0.80, 1 s | see [`Thresholds`] |
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct LagConfig {
    /// Watch the runtime.
    pub enabled: bool,
    /// The lateness that counts as full.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub max_lag: Duration,
    /// How often the probe measures.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub probe_interval: Duration,
    /// The levels.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub thresholds: Thresholds,
}

impl Default for LagConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_lag: Duration::from_millis(100),
            probe_interval: Duration::from_millis(50),
            thresholds: Thresholds::default(),
        }
    }
}

/// The `[overload]` section: which resources are watched, how often, and what the levels mean to
/// the shedder.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `interval` | 0.25 s | how often every resource is read |
/// | `mode` | enforce | `observe_only`: read, count and log levels, publish nothing |
/// | `warn_level` | 0.6 | the overload level published at [`Pressure::Warn`](crate::Pressure::Warn): with the shedder's default band, every `Sheddable` request is shed |
/// | `degrade_level` | 0.7 | published at `Degrade`: `SheddablePlus` shed too |
/// | `memory`, `fds`, `lag` | off | [`MemoryConfig`], [`FdConfig`], [`LagConfig`] |
///
/// At `Critical` the monitors say "overloaded": the shedder refuses every request but
/// `CriticalPlus` (503 + `Retry-After`) and readiness fails.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct OverloadMonitorConfig {
    /// How often every resource is read.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub interval: Duration,
    /// Enforce (publish) or only observe.
    pub mode: EnforcementMode,
    /// The overload level published at warn.
    pub warn_level: f64,
    /// The overload level published at degrade.
    pub degrade_level: f64,
    /// Memory.
    pub memory: MemoryConfig,
    /// File descriptors.
    pub fds: FdConfig,
    /// Runtime lag.
    pub lag: LagConfig,
}

impl Default for OverloadMonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(250),
            mode: EnforcementMode::Enforce,
            warn_level: 0.6,
            degrade_level: 0.7,
            memory: MemoryConfig::default(),
            fds: FdConfig::default(),
            lag: LagConfig::default(),
        }
    }
}

impl OverloadMonitorConfig {
    /// Whether any resource is watched.
    pub fn any_enabled(&self) -> bool {
        self.memory.enabled || self.fds.enabled || self.lag.enabled
    }

    /// Checks the section.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: an interval outside 10 ms to 1 min, published levels
    /// outside `0 < warn_level <= degrade_level < 1`, thresholds out of order, a lag probe
    /// outside 1 ms to 10 s or a zero `max_lag`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(10) || self.interval > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "interval",
                format!("{:?} must be 10 ms to 1 minute", self.interval),
            ));
        }
        if !(self.warn_level > 0.0
            && self.warn_level <= self.degrade_level
            && self.degrade_level < 1.0)
        {
            return Err(ConfigError::new(
                "warn_level",
                format!(
                    "need 0 < warn_level <= degrade_level < 1, got {} and {}",
                    self.warn_level, self.degrade_level
                ),
            ));
        }
        self.memory
            .thresholds
            .validate()
            .map_err(|e| e.within("memory"))?;
        if self.memory.max_rss == Some(0) {
            return Err(ConfigError::new("memory.max_rss", "must be above 0"));
        }
        self.fds
            .thresholds
            .validate()
            .map_err(|e| e.within("fds"))?;
        self.lag
            .thresholds
            .validate()
            .map_err(|e| e.within("lag"))?;
        if self.lag.max_lag.is_zero() || self.lag.max_lag > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "lag.max_lag",
                "must be above 0 and at most a minute",
            ));
        }
        if self.lag.probe_interval < Duration::from_millis(1)
            || self.lag.probe_interval > Duration::from_secs(10)
        {
            return Err(ConfigError::new(
                "lag.probe_interval",
                "must be 1 ms to 10 s",
            ));
        }
        Ok(())
    }
}

/// Builds an [`OverloadMonitor`]: start with [`OverloadMonitor::builder`].
#[must_use]
pub struct OverloadMonitorBuilder {
    config: OverloadMonitorConfig,
    custom: Vec<(Box<dyn Monitor>, Thresholds)>,
    in_process_fds: Option<(InProcessCount, u32)>,
    overload: Option<OverloadState>,
}

impl fmt::Debug for OverloadMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadMonitorBuilder")
            .field("config", &self.config)
            .field("custom", &self.custom.len())
            .finish_non_exhaustive()
    }
}

impl From<OverloadMonitorConfig> for OverloadMonitorBuilder {
    fn from(config: OverloadMonitorConfig) -> Self {
        Self {
            config,
            custom: Vec::new(),
            in_process_fds: None,
            overload: None,
        }
    }
}

impl OverloadMonitor {
    /// A builder with every resource off.
    pub fn builder() -> OverloadMonitorBuilder {
        OverloadMonitorConfig::default().into()
    }

    /// The monitors `config` turns on, publishing into [`OverloadState::global`].
    ///
    /// # Errors
    ///
    /// As [`OverloadMonitorBuilder::build`].
    pub fn from_config(config: OverloadMonitorConfig) -> Result<Self, ConfigError> {
        OverloadMonitorBuilder::from(config).build()
    }
}

impl OverloadMonitorBuilder {
    /// How often every resource is read. Default 250 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    palisade_core::enforcement_setters!(
        "read, count and log the levels, publish nothing (no request is shed for them)."
    );

    /// Watch memory ([`MemoryConfig`]).
    pub fn memory(mut self, memory: MemoryConfig) -> Self {
        self.config.memory = memory;
        self
    }

    /// Watch file descriptors ([`FdConfig`]).
    pub fn fds(mut self, fds: FdConfig) -> Self {
        self.config.fds = fds;
        self
    }

    /// Lists `/proc/self/fd` only every `every` samples, following `count` (connections and
    /// listeners the application knows of) in between.
    pub fn in_process_fd_count(mut self, count: InProcessCount, every: u32) -> Self {
        self.in_process_fds = Some((count, every));
        self
    }

    /// Watch the runtime's lag ([`LagConfig`]).
    pub fn lag(mut self, lag: LagConfig) -> Self {
        self.config.lag = lag;
        self
    }

    /// Watch a resource of your own.
    pub fn monitor(mut self, monitor: impl Monitor, thresholds: Thresholds) -> Self {
        self.custom.push((Box::new(monitor), thresholds));
        self
    }

    /// Publish into `state` instead of [`OverloadState::global`].
    pub fn overload_state(mut self, state: OverloadState) -> Self {
        self.overload = Some(state);
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &OverloadMonitorConfig {
        &self.config
    }

    /// Validates the configuration, finds the memory source, registers an overload source and
    /// metric handles per resource.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] from [`OverloadMonitorConfig::validate`] (keys under `overload.`), a
    /// custom monitor's invalid thresholds, or more overload sources than the state holds.
    pub fn build(self) -> Result<OverloadMonitor, ConfigError> {
        let within = |e: ConfigError| e.within("overload");
        let config = self.config;
        config.validate().map_err(within)?;
        let state = self
            .overload
            .unwrap_or_else(|| OverloadState::global().clone());
        let mut monitors: Vec<(Box<dyn Monitor>, Thresholds)> = Vec::new();
        if config.memory.enabled {
            let max_rss = config.memory.max_rss;
            let monitor = match &config.memory.cgroup_dir {
                Some(dir) if dir.join("memory.max").is_file() => {
                    MemoryMonitor::with_rss_budget(MemorySource::CgroupV2(dir.clone()), max_rss)
                }
                Some(dir) => {
                    MemoryMonitor::with_rss_budget(MemorySource::CgroupV1(dir.clone()), max_rss)
                }
                None => MemoryMonitor::detect(max_rss),
            };
            if monitor.sources().is_empty() {
                tracing::warn!(
                    "no container memory limit found and no overload.memory.max_rss set: the \
                     memory monitor has nothing to compare with and stays idle"
                );
            }
            monitors.push((Box::new(monitor), config.memory.thresholds));
        }
        if config.fds.enabled {
            let mut monitor = FdMonitor::new();
            if let Some((count, every)) = self.in_process_fds {
                monitor = monitor.with_in_process_count(count, every);
            }
            monitors.push((Box::new(monitor), config.fds.thresholds));
        }
        if config.lag.enabled {
            let monitor = LagMonitor::new(config.lag.max_lag, config.lag.probe_interval);
            monitors.push((Box::new(monitor), config.lag.thresholds));
        }
        for (monitor, thresholds) in self.custom {
            thresholds
                .validate()
                .map_err(|e| within(e.within(monitor.name())))?;
            monitors.push((monitor, thresholds));
        }
        let watched = monitors
            .into_iter()
            .map(|(monitor, thresholds)| Watched::new(monitor, thresholds, &state, config.mode))
            .collect::<Result<_, _>>()
            .map_err(within)?;
        Ok(OverloadMonitor {
            watched,
            interval: config.interval,
            enforce: config.mode.enforces(),
            published: Published {
                warn: config.warn_level,
                degrade: config.degrade_level,
            },
            actions: action_gauges(),
            pressure: crate::PressureHandle::default(),
        })
    }
}
