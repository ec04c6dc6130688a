//! Scopes: which breaker a call goes through. One breaker for the whole service ([`Global`]),
//! one per axum route ([`PerRoute`]), or one per key computed from the request ([`PerKey`]).

use std::sync::{Arc, OnceLock};

use axum::extract::MatchedPath;
use http::Request;
use palisade_core::UNMATCHED_ROUTE;

use crate::{breaker::Breaker, registry::BreakerRegistry};

/// The key of a request's breaker in a per-route or per-key scope; `None` sends the request past
/// the breaker unprotected.
pub trait ScopeKey<Req> {
    /// The key of `request`, borrowed from it (so that choosing a breaker allocates nothing).
    fn key<'a>(&self, request: &'a Req) -> Option<&'a str>;
}

/// One breaker for everything the layer wraps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl<Req> ScopeKey<Req> for Global {
    fn key<'a>(&self, _: &'a Req) -> Option<&'a str> {
        None
    }
}

/// One breaker per axum route template (`MatchedPath`, such as `/api/items/{id}`); requests that
/// matched no route share the `unmatched` breaker. Use the layer with `Router::route_layer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerRoute;

impl<B> ScopeKey<Request<B>> for PerRoute {
    fn key<'a>(&self, request: &'a Request<B>) -> Option<&'a str> {
        Some(
            request
                .extensions()
                .get::<MatchedPath>()
                .map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
        )
    }
}

/// One breaker per key from a closure over the request (an upstream host, a tenant header).
pub struct PerKey<F>(pub(crate) Arc<F>);

impl<F> Clone for PerKey<F> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<F> std::fmt::Debug for PerKey<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerKey(..)")
    }
}

impl<Req, F> ScopeKey<Req> for PerKey<F>
where
    F: for<'a> Fn(&'a Req) -> Option<&'a str>,
{
    fn key<'a>(&self, request: &'a Req) -> Option<&'a str> {
        (self.0)(request)
    }
}

/// The state of a layer's scope, created once when the layer is built.
#[derive(Clone)]
pub(crate) enum Scope<K> {
    One(Breaker),
    Keyed(BreakerRegistry, K),
}

/// Picks the breaker of each call. Each service a layer makes (one per route under
/// `route_layer`) remembers the first breaker it resolved, so its calls skip the registry.
pub(crate) struct Selector {
    cache: Option<Arc<Cache>>,
}

/// The first key a service resolved, with its breaker.
type Cache = OnceLock<(Box<str>, Breaker)>;

impl Clone for Selector {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl Selector {
    pub(crate) fn new<K>(scope: &Scope<K>) -> Self {
        Self {
            cache: matches!(scope, Scope::Keyed(..)).then(|| Arc::new(OnceLock::new())),
        }
    }

    /// The breaker of `request`, or `None` when it goes unprotected.
    #[inline]
    pub(crate) fn select<K, Req>(&self, scope: &Scope<K>, request: &Req) -> Option<Breaker>
    where
        K: ScopeKey<Req>,
    {
        match scope {
            Scope::One(breaker) => Some(breaker.clone()),
            Scope::Keyed(registry, key_of) => {
                let key = key_of.key(request)?;
                let cache = self.cache.as_deref();
                if let Some((cached, breaker)) = cache.and_then(OnceLock::get)
                    && **cached == *key
                    && !breaker.is_evicted()
                {
                    breaker.touch();
                    return Some(breaker.clone());
                }
                let (breaker, overflow) = registry.lookup(key);
                if let Some(cache) = cache
                    && !overflow
                    && cache.get().is_none()
                {
                    let _ = cache.set((key.into(), breaker.clone()));
                }
                Some(breaker)
            }
        }
    }
}
