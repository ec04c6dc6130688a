//! [`Retry`]: the service the layer produces.

use std::{
    fmt,
    future::poll_fn,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::{
    attempt::{Policy, drive},
    body::ReplayBody,
    error::RetryError,
    future::ResponseFuture,
    policy::{AllErrors, ClassifyError, http_verdict, is_idempotent},
};

/// Retries the calls of an HTTP client service; see the [crate docs](crate).
///
/// It takes `Request<B>` and calls the inner service with `Request<ReplayBody<B>>` (see
/// [`ReplayBody`]). The inner service is cloned for each retry, as tower's `Retry` does: a
/// hyper or reqwest client clone is a few reference counts.
pub struct Retry<S, C = AllErrors> {
    inner: S,
    policy: Arc<Policy>,
    classify: C,
}

impl<S: Clone, C: Clone> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("client", &self.policy.name)
            .finish_non_exhaustive()
    }
}

impl<S, C> Retry<S, C> {
    pub(crate) fn new(inner: S, policy: Arc<Policy>, classify: C) -> Self {
        Self {
            inner,
            policy,
            classify,
        }
    }

    palisade_core::inner_service_accessors!();
}

impl<S, C, B, ResB> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Send,
    ResB: Send + 'static,
    C: ClassifyError<S::Error> + Clone + Send + Sync + 'static,
{
    type Response = Response<ResB>;
    type Error = RetryError<S::Error>;
    type Future = ResponseFuture<Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RetryError::Inner)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service made ready by `poll_ready` makes the first attempt; the clone left in its
        // place will be made ready before its own first call.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let policy = Arc::clone(&self.policy);
        let classify = self.classify.clone();
        ResponseFuture::new(Box::pin(send(policy, classify, ready, request)))
    }
}

async fn send<S, C, B, ResB>(
    policy: Arc<Policy>,
    classify: C,
    ready: S,
    request: Request<B>,
) -> Result<Response<ResB>, RetryError<S::Error>>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone,
    B: Body<Data = Bytes>,
    C: ClassifyError<S::Error>,
{
    let (parts, body) = request.into_parts();
    let idempotent = is_idempotent(&parts.method, &parts.headers);
    let host = if policy.budget.is_per_host() {
        parts.uri.authority().map(|a| a.as_str().to_owned())
    } else {
        None
    };
    let may_retry = idempotent && policy.max_attempts > 1;
    let (body, retryable) = if may_retry && policy.enforce {
        // Only a request that may be retried is read ahead; the others stream through untouched.
        let body = ReplayBody::buffer(body, policy.max_replay_body).await;
        let replayable = body.is_replayable();
        (body, replayable)
    } else {
        // Observe-only never retries, so it does not hold bodies up either: it judges them by
        // their size hint (a streaming body with no upper bound counts as too large).
        let fits = body.is_end_stream()
            || body
                .size_hint()
                .upper()
                .is_some_and(|n| usize::try_from(n).is_ok_and(|n| n <= policy.max_replay_body));
        (ReplayBody::direct(body), may_retry && fits)
    };
    let template = body.replay().map(|copy| (parts.clone(), copy));
    // A template exists only for a request that will be retried when it fails.
    let base = template.as_ref().map(|_| ready.clone());
    let mut first = Some((ready, Request::from_parts(parts, body)));
    let statuses = policy.statuses;
    drive(
        &policy,
        host.as_deref(),
        retryable,
        move |_| {
            if let Some((service, request)) = first.take() {
                return call(service, true, request);
            }
            // Only reached when `retryable`, so both are there.
            let (parts, body) = template.as_ref().expect("a replayable request");
            let body = body.replay().expect("a replayable body");
            let service = base.clone().expect("a retryable request");
            call(service, false, Request::from_parts(parts.clone(), body))
        },
        |result| http_verdict(statuses, &classify, result),
    )
    .await
}

/// One attempt: waits for the service to be ready (unless it already is), then calls it.
async fn call<S, R>(mut service: S, ready: bool, request: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
{
    if !ready {
        poll_fn(|cx| service.poll_ready(cx)).await?;
    }
    service.call(request).await
}
