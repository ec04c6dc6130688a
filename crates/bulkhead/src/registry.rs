//! [`BulkheadRegistry`]: named bulkheads shared by several routes.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use palisade_core::ConfigError;

use crate::{config::BulkheadConfig, layer::BulkheadLayer};

/// Named bulkheads, created once and looked up by name, so that routes declared in different
/// places (different `Router`s, nested groups) share one pool of slots.
///
/// Cloning the registry shares it.
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade_bulkhead::{BulkheadConfig, BulkheadRegistry};
///
/// let registry = BulkheadRegistry::new();
/// let mut reports = BulkheadConfig::named("reports");
/// reports.max_concurrent = 10;
/// registry.register(reports)?;
///
/// // Elsewhere: both routes share the same 10 slots.
/// let reports = registry.get("reports").expect("registered");
/// let a: Router = Router::new().route("/daily", get(|| async { "d" })).route_layer(reports.clone());
/// let b: Router = Router::new().route("/weekly", get(|| async { "w" })).route_layer(reports);
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct BulkheadRegistry {
    bulkheads: Arc<Mutex<BTreeMap<String, BulkheadLayer>>>,
}

impl BulkheadRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BulkheadLayer>> {
        self.bulkheads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the bulkhead `config.name` and returns its layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid, or (key `name`) when a bulkhead of
    /// that name is already registered.
    pub fn register(&self, config: BulkheadConfig) -> Result<BulkheadLayer, ConfigError> {
        let mut map = self.map();
        if map.contains_key(config.name.as_ref()) {
            return Err(ConfigError::new(
                "name",
                format!("bulkhead {:?} is already registered", config.name),
            ));
        }
        let name = config.name.to_string();
        let layer = BulkheadLayer::from_config(config)?;
        map.insert(name, layer.clone());
        Ok(layer)
    }

    /// The bulkhead `config.name`: the registered one if its configuration equals `config`,
    /// otherwise a new one.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid, or (key `name`) when a bulkhead of
    /// that name is registered with a different configuration.
    pub fn get_or_register(&self, config: BulkheadConfig) -> Result<BulkheadLayer, ConfigError> {
        let mut map = self.map();
        if let Some(existing) = map.get(config.name.as_ref()) {
            if existing.bulkhead().config() == &config {
                return Ok(existing.clone());
            }
            return Err(ConfigError::new(
                "name",
                format!(
                    "bulkhead {:?} is already registered with a different configuration",
                    config.name
                ),
            ));
        }
        let name = config.name.to_string();
        let layer = BulkheadLayer::from_config(config)?;
        map.insert(name, layer.clone());
        Ok(layer)
    }

    /// The layer of the bulkhead `name`, if registered.
    pub fn get(&self, name: &str) -> Option<BulkheadLayer> {
        self.map().get(name).cloned()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
}
