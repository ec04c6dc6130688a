//! The server middleware: decide the request's id, put it everywhere, call the inner service.

use std::{
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use palisade_core::{EnforcementMode, RequestId, SpanLevel, with_current};
use tower::Service;
use tracing::Span;

use crate::{
    future::ResponseFuture,
    generator::{Generator, IdFormat},
    metrics::{Metrics, Reason},
    trust::{Peer, Trust},
    validation::Validator,
};

/// A layer's compiled settings and shared state, created once when the layer is built and shared
/// by every service clone on every connection.
pub(crate) struct Settings {
    pub(crate) header: HeaderName,
    pub(crate) aliases: Box<[HeaderName]>,
    pub(crate) generator: Generator,
    pub(crate) validator: Validator,
    pub(crate) trust: Trust,
    pub(crate) mode: EnforcementMode,
    pub(crate) span_level: SpanLevel,
    pub(crate) record_on_current_span: bool,
    pub(crate) metrics: OnceLock<Metrics>,
    pub(crate) warned_no_peer: AtomicBool,
    pub(crate) warned_bad_generated: AtomicBool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("header", &self.header)
            .field("aliases", &self.aliases)
            .field("generator", &self.generator)
            .field("validator", &self.validator)
            .field("trust", &self.trust)
            .field("mode", &self.mode)
            .field("span_level", &self.span_level)
            .field("record_on_current_span", &self.record_on_current_span)
            .finish_non_exhaustive()
    }
}

/// What the layer did with the incoming id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A valid, trusted incoming id is the request's id. `alias` when it came in an alias.
    Kept { alias: bool },
    /// No incoming id: a fresh one.
    Generated,
    /// The incoming id was not kept (enforce), or would not be (observe-only).
    Replaced { reason: Reason, length: usize },
}

/// The first configured header present on the request: its value when it appears once, or the
/// total length of its values when repeated (ambiguous, so invalid).
fn find_incoming<'a>(
    headers: &'a HeaderMap,
    header: &HeaderName,
    aliases: &[HeaderName],
) -> Option<(bool, Result<&'a HeaderValue, usize>)> {
    if headers.is_empty() {
        return None;
    }
    for (i, name) in std::iter::once(header).chain(aliases).enumerate() {
        let mut values = headers.get_all(name).iter();
        if let Some(first) = values.next() {
            let found = match values.next() {
                None => Ok(first),
                Some(second) => {
                    Err(first.len() + second.len() + values.map(HeaderValue::len).sum::<usize>())
                }
            };
            return Some((i > 0, found));
        }
    }
    None
}

impl Settings {
    /// The settings of `RequestIdLayer::new()`.
    pub(crate) fn defaults() -> Self {
        Self {
            header: HeaderName::from_static(crate::config::DEFAULT_HEADER),
            aliases: Box::default(),
            generator: Generator::Format(IdFormat::UuidV7),
            validator: Validator::default(),
            trust: Trust::Always,
            mode: EnforcementMode::Enforce,
            span_level: SpanLevel::Info,
            record_on_current_span: true,
            metrics: OnceLock::new(),
            warned_no_peer: AtomicBool::new(false),
            warned_bad_generated: AtomicBool::new(false),
        }
    }

    fn metrics(&self) -> &Metrics {
        self.metrics.get_or_init(|| Metrics::register(self.mode))
    }

    /// A fresh id; a custom generator's id that fails validation is replaced by a UUID v7.
    fn fresh(&self) -> RequestId {
        match &self.generator {
            Generator::Format(format) => format.generate(),
            custom @ Generator::Custom(_) => {
                let id = custom.generate();
                if self.validator.is_valid(id.header_value().as_bytes()) {
                    id
                } else {
                    if !self.warned_bad_generated.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            length = id.header_value().len(),
                            "custom request id generator made an id that fails validation; \
                             using UUID v7 ids instead for such ids"
                        );
                    }
                    IdFormat::UuidV7.generate()
                }
            }
        }
    }

    /// Decides the request's id.
    fn decide<B>(&self, request: &Request<B>) -> (RequestId, Outcome) {
        let Some((alias, incoming)) = find_incoming(request.headers(), &self.header, &self.aliases)
        else {
            return (self.fresh(), Outcome::Generated);
        };
        let value = match incoming {
            Ok(value) if self.validator.is_valid(value.as_bytes()) => value,
            Ok(value) => {
                let length = value.len();
                return (
                    self.fresh(),
                    Outcome::Replaced {
                        reason: Reason::Invalid,
                        length,
                    },
                );
            }
            Err(length) => {
                return (
                    self.fresh(),
                    Outcome::Replaced {
                        reason: Reason::Invalid,
                        length,
                    },
                );
            }
        };
        match self.trust.allows(request.extensions()) {
            Peer::Trusted => match RequestId::from_header_value(value.clone()) {
                Ok(id) => (id, Outcome::Kept { alias }),
                // The validator's charset is visible ASCII, so this does not happen; were it to,
                // the id is replaced like any invalid one.
                Err(_) => (
                    self.fresh(),
                    Outcome::Replaced {
                        reason: Reason::Invalid,
                        length: value.len(),
                    },
                ),
            },
            peer => {
                if peer == Peer::Unknown && !self.warned_no_peer.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "request id trust policy \"trusted_peers\" needs the peer address, but \
                         the request has no ConnectInfo<SocketAddr>: serve the app with \
                         into_make_service_with_connect_info::<SocketAddr>(); until then no \
                         incoming id is trusted"
                    );
                }
                let length = value.len();
                let replaced = Outcome::Replaced {
                    reason: Reason::Untrusted,
                    length,
                };
                match RequestId::from_header_value(value.clone()) {
                    // Observe-only: the valid id is kept; the decision is only counted.
                    Ok(id) if !self.mode.enforces() => (id, replaced),
                    _ => (self.fresh(), replaced),
                }
            }
        }
    }

    /// Writes the id onto the request's headers as the mode allows.
    fn apply<B>(&self, request: &mut Request<B>, id: &RequestId, outcome: Outcome) {
        let headers = request.headers_mut();
        match outcome {
            Outcome::Kept { alias: false } => {}
            Outcome::Kept { alias: true } | Outcome::Generated => {
                headers.insert(self.header.clone(), id.header_value().clone());
            }
            Outcome::Replaced { reason, .. } => {
                if self.mode.enforces() {
                    headers.insert(self.header.clone(), id.header_value().clone());
                    for alias in &self.aliases {
                        if headers.contains_key(alias) {
                            headers.insert(alias.clone(), id.header_value().clone());
                        }
                    }
                } else if reason == Reason::Untrusted && !headers.contains_key(&self.header) {
                    // Observe-only kept an untrusted id that came in an alias.
                    headers.insert(self.header.clone(), id.header_value().clone());
                }
            }
        }
    }

    fn span(&self, id: &RequestId) -> Span {
        palisade_core::span_at!(self.span_level, target: "palisade_request_id", "request", request_id = %id)
    }

    fn report(&self, outcome: Outcome) {
        match outcome {
            Outcome::Kept { .. } => {}
            Outcome::Generated => self.metrics().generated(),
            Outcome::Replaced { reason, length } => {
                self.metrics().replaced(reason);
                // Only the length: the value may be hostile and must not reach the logs.
                if self.mode.enforces() {
                    tracing::debug!(
                        target: "palisade_request_id",
                        reason = reason.as_str(),
                        length,
                        header = %self.header,
                        "incoming request id replaced"
                    );
                } else {
                    tracing::debug!(
                        target: "palisade_request_id",
                        reason = reason.as_str(),
                        length,
                        header = %self.header,
                        "incoming request id would be replaced (observe-only: request left as is)"
                    );
                }
            }
        }
    }
}

/// The server middleware of [`RequestIdLayer`](crate::RequestIdLayer); see the crate
/// documentation for what it does.
#[derive(Clone)]
pub struct RequestIdService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S: fmt::Debug> fmt::Debug for RequestIdService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestIdService")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S> RequestIdService<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    palisade_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        let (id, outcome) = settings.decide(&request);
        settings.apply(&mut request, &id, outcome);
        request.extensions_mut().insert(id.clone());

        if settings.record_on_current_span {
            Span::current().record("request_id", tracing::field::display(&id));
        }
        let span = settings.span(&id);
        let mut slot = Some(id);
        let inner = {
            let _entered = span.enter();
            settings.report(outcome);
            with_current(&mut slot, || self.inner.call(request))
        };
        ResponseFuture::new(
            inner,
            span,
            slot,
            settings.header.clone(),
            settings.mode.enforces(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn incoming_prefers_the_main_header_then_aliases_in_order() {
        let main = HeaderName::from_static("x-request-id");
        let aliases = [
            HeaderName::from_static("x-correlation-id"),
            HeaderName::from_static("x-trace-id"),
        ];
        let h = headers(&[("x-trace-id", "t"), ("x-correlation-id", "c")]);
        let (alias, found) = find_incoming(&h, &main, &aliases).unwrap();
        assert!(alias);
        assert_eq!(found.unwrap(), "c");
        let h = headers(&[("x-trace-id", "t"), ("x-request-id", "r")]);
        let (alias, found) = find_incoming(&h, &main, &aliases).unwrap();
        assert!(!alias);
        assert_eq!(found.unwrap(), "r");
        assert!(find_incoming(&HeaderMap::new(), &main, &aliases).is_none());
        let h = headers(&[("x-request-id", "ab"), ("x-request-id", "cde")]);
        assert_eq!(find_incoming(&h, &main, &aliases).unwrap().1, Err(5));
    }
}
