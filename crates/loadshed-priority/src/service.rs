//! [`LoadShed`]: the service the layer produces.

use std::{
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::{BodyEnd, OnBodyEnd, Priority, ResponseBody};
use tower_service::Service;

use crate::{
    curve::shed_probability,
    future::{ResponseFuture, Shed},
    layer::Shared,
    metrics::Outcome,
    propagate::with_priority,
};

/// Classifies each request, then admits or sheds it in `call`; see the [crate docs](crate).
pub struct LoadShed<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for LoadShed<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for LoadShed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadShed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> LoadShed<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    palisade_core::inner_service_accessors!();
}

impl Shared {
    /// The overload level: the worse of the shared signal and this layer's own depth; a limiter
    /// that is shedding counts as the ceiling. Also whether one is.
    fn level(&self) -> (f64, bool) {
        let shared = self.overload.snapshot();
        let own = f64::from(self.in_flight.load(Ordering::Relaxed)) / self.max_queue_depth;
        let level = shared.level.max(own);
        let level = if shared.overloaded {
            level.max(self.ceiling)
        } else {
            level
        };
        self.metrics.level.set(level);
        (level, shared.overloaded)
    }

    fn sheds(&self, priority: Priority) -> bool {
        let (level, overloaded) = self.level();
        if level < self.critical_start {
            self.sustain.below();
            if level < self.threshold {
                return false; // The common case: no curve, no dice.
            }
        } else {
            let critical = priority == Priority::Critical;
            let sustained = self.sustain.above(critical);
            if critical && !sustained && !overloaded {
                // A peak, not (yet) a sustained overload: `Critical` rides it out. A limiter
                // that is shedding would refuse it anyway, so that sheds it at once.
                return false;
            }
        }
        let p = shed_probability(priority, level, self.threshold, self.ceiling, self.start);
        p >= 1.0 || (p > 0.0 && self.random.next_unit() < p)
    }
}

/// This layer's own in-flight count, held until the response body ends.
pub struct InFlight(Arc<Shared>);

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl OnBodyEnd for InFlight {
    fn on_body_end(self, _end: BodyEnd) {
        drop(self);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LoadShed<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody, InFlight>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Decisions are taken in `call`, per request and per class.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let priority = shared.classifier.classify(&request);
        priority.assign(&mut request);
        // Recorded when the enclosing span declares a `priority` field (see the crate docs).
        tracing::Span::current().record("priority", priority.as_str());
        let shed = shared.sheds(priority);
        if shed && shared.enforce {
            shared.metrics.record(priority, Outcome::Shed);
            return ResponseFuture::refused(Shed {
                shared: Arc::clone(&self.shared),
                priority,
            });
        }
        // Observe-only: counted as shed (under `mode="observe_only"`), and served.
        shared.metrics.record(
            priority,
            if shed {
                Outcome::Shed
            } else {
                Outcome::Admitted
            },
        );
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(Arc::clone(&self.shared));
        ResponseFuture::admitted(with_priority(priority, self.inner.call(request)), guard)
    }
}
