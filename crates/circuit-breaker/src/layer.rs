//! [`CircuitBreakerLayer`] (servers) and the client layers built from it.

use std::sync::Arc;

use http::StatusCode;
use palisade_core::{ConfigError, Rejection, RetryAfter};
use tower_layer::Layer;

use crate::{
    breaker::{Breaker, CircuitBreakerBuilder},
    classify::HttpClassifier,
    registry::BreakerRegistry,
    scope::{Global, PerKey, PerRoute, Scope, Selector},
    service::{CircuitBreaker, CircuitBreakerClient, CircuitBreakerHttpClient},
};

pub(crate) struct Shared<C, K> {
    pub(crate) scope: Scope<K>,
    pub(crate) classifier: C,
    pub(crate) rejection: Rejection,
}

fn rejection(jitter: std::time::Duration) -> Result<Rejection, ConfigError> {
    Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "circuit_open")
        .title("Service Unavailable")
        .detail(
            "A dependency of this endpoint is failing and its circuit breaker is open. \
             Retry after the delay in Retry-After.",
        )
        .retry_after(RetryAfter::new(std::time::Duration::ZERO).with_jitter(jitter))
        .build()
}

/// The server layer: calls through an open breaker are answered at once with `503 Service
/// Unavailable`, an RFC 9457 problem body (`"reason": "circuit_open"`) and `Retry-After` equal to
/// the remaining open time (rounded up to whole seconds, at least 1). Admitted calls are timed
/// until their response body ends and classified by `C` (default [`HttpClassifier`]: 5xx and
/// errors fail).
///
/// The scope `K` says which breaker a request uses: [`Global`] (one breaker,
/// [`CircuitBreakerLayer::new`]), [`PerRoute`] (one per axum route template,
/// [`CircuitBreakerLayer::per_route`]) or [`PerKey`] (one per key from a closure,
/// [`CircuitBreakerLayer::per_key`]). The state is created once, when the layer is built: every
/// service the layer makes, on every route and connection, shares it, so the breaker works under
/// `Router::route_layer` (peers that create state per `layer()` call reset on every request).
///
/// [`CircuitBreakerLayer::client`] and [`CircuitBreakerLayer::http_client`] make client layers
/// over the same breakers, with typed errors instead of 503s.
pub struct CircuitBreakerLayer<C = HttpClassifier, K = Global> {
    pub(crate) shared: Arc<Shared<C, K>>,
}

impl<C, K> Clone for CircuitBreakerLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, K> std::fmt::Debug for CircuitBreakerLayer<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shared.scope {
            Scope::One(breaker) => f.debug_tuple("CircuitBreakerLayer").field(breaker).finish(),
            Scope::Keyed(registry, _) => f
                .debug_tuple("CircuitBreakerLayer")
                .field(registry)
                .finish(),
        }
    }
}

impl CircuitBreakerLayer {
    /// A layer around `breaker`: every request it wraps goes through that one breaker. Keep a
    /// clone of the breaker as its handle, or share it with guard calls to the same dependency.
    ///
    /// # Panics
    ///
    /// Never: the rejection's status and reason are constants.
    pub fn new(breaker: Breaker) -> Self {
        Self::around(breaker)
    }

    /// A layer around a new breaker configured by `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see
    /// [`CircuitBreakerConfig::validate`](crate::CircuitBreakerConfig::validate)).
    pub fn from_config(config: crate::CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Breaker::from_config(config).map(Self::around)
    }

    fn around(breaker: Breaker) -> Self {
        let rejection = rejection(breaker.retry_after_jitter())
            .expect("the circuit breaker rejection is statically valid");
        Self {
            shared: Arc::new(Shared {
                scope: Scope::One(breaker),
                classifier: HttpClassifier::default(),
                rejection,
            }),
        }
    }

    /// A layer with one breaker per axum route template, configured by `builder` and named
    /// `name:/route/{template}`. Apply it with `Router::route_layer`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an invalid configuration.
    pub fn per_route(
        builder: CircuitBreakerBuilder,
    ) -> Result<CircuitBreakerLayer<HttpClassifier, PerRoute>, ConfigError> {
        CircuitBreakerLayer::keyed(builder, PerRoute)
    }

    /// A layer with one breaker per key that `key` reads from the request (borrowed, such as a
    /// header value or the URI's host), named `name:key`. Requests for which `key` returns `None`
    /// pass unprotected.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an invalid configuration.
    pub fn per_key<Req, F>(
        builder: CircuitBreakerBuilder,
        key: F,
    ) -> Result<CircuitBreakerLayer<HttpClassifier, PerKey<F>>, ConfigError>
    where
        F: for<'a> Fn(&'a Req) -> Option<&'a str>,
    {
        CircuitBreakerLayer::keyed(builder, PerKey(Arc::new(key)))
    }
}

impl<K> CircuitBreakerLayer<HttpClassifier, K> {
    fn keyed(builder: CircuitBreakerBuilder, key: K) -> Result<Self, ConfigError> {
        let (name, settings, hooks) = builder.parts()?;
        let rejection = rejection(settings.retry_after_jitter)?;
        Ok(Self {
            shared: Arc::new(Shared {
                scope: Scope::Keyed(BreakerRegistry::new(name, settings, hooks), key),
                classifier: HttpClassifier::default(),
                rejection,
            }),
        })
    }
}

impl<C, K: Clone> CircuitBreakerLayer<C, K> {
    /// The same breakers with another classifier: an [`HttpClassifier`] with overrides, a
    /// [`ResultClassifier`](crate::ResultClassifier), or a closure over `&Result<Response, Error>`.
    pub fn with_classifier<C2>(&self, classifier: C2) -> CircuitBreakerLayer<C2, K> {
        CircuitBreakerLayer {
            shared: Arc::new(Shared {
                scope: self.shared.scope.clone(),
                classifier,
                rejection: self.shared.rejection.clone(),
            }),
        }
    }

    /// A client layer over the same breakers, for any tower service: a rejection is
    /// [`BreakerError::Rejected`](crate::BreakerError::Rejected), and a call is recorded when its
    /// future completes.
    pub fn client(&self) -> CircuitBreakerClientLayer<C, K> {
        CircuitBreakerClientLayer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A client layer over the same breakers, for HTTP clients (a hyper client): a rejection is
    /// [`BreakerError::Rejected`](crate::BreakerError::Rejected), and a call is recorded when its
    /// response body ends, so slow bodies count as slow calls.
    pub fn http_client(&self) -> CircuitBreakerHttpClientLayer<C, K> {
        CircuitBreakerHttpClientLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, K> CircuitBreakerLayer<C, K> {
    /// The breaker of a [`Global`] layer.
    pub fn breaker(&self) -> Option<&Breaker> {
        match &self.shared.scope {
            Scope::One(breaker) => Some(breaker),
            Scope::Keyed(..) => None,
        }
    }

    /// The registry of a [`PerRoute`] or [`PerKey`] layer.
    pub fn registry(&self) -> Option<&BreakerRegistry> {
        match &self.shared.scope {
            Scope::One(_) => None,
            Scope::Keyed(registry, _) => Some(registry),
        }
    }
}

impl<S, C, K> Layer<S> for CircuitBreakerLayer<C, K> {
    type Service = CircuitBreaker<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(
            inner,
            Arc::clone(&self.shared),
            Selector::new(&self.shared.scope),
        )
    }
}

/// A client layer for any tower service; see [`CircuitBreakerLayer::client`].
pub struct CircuitBreakerClientLayer<C = HttpClassifier, K = Global> {
    shared: Arc<Shared<C, K>>,
}

impl<C, K> Clone for CircuitBreakerClientLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, K> std::fmt::Debug for CircuitBreakerClientLayer<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CircuitBreakerClientLayer")
    }
}

impl<S, C, K> Layer<S> for CircuitBreakerClientLayer<C, K> {
    type Service = CircuitBreakerClient<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerClient::new(
            inner,
            Arc::clone(&self.shared),
            Selector::new(&self.shared.scope),
        )
    }
}

/// A client layer for HTTP services; see [`CircuitBreakerLayer::http_client`].
pub struct CircuitBreakerHttpClientLayer<C = HttpClassifier, K = Global> {
    shared: Arc<Shared<C, K>>,
}

impl<C, K> Clone for CircuitBreakerHttpClientLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, K> std::fmt::Debug for CircuitBreakerHttpClientLayer<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CircuitBreakerHttpClientLayer")
    }
}

impl<S, C, K> Layer<S> for CircuitBreakerHttpClientLayer<C, K> {
    type Service = CircuitBreakerHttpClient<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerHttpClient::new(
            inner,
            Arc::clone(&self.shared),
            Selector::new(&self.shared.scope),
        )
    }
}
