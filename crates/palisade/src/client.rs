//! The resilient client stack for outgoing calls: one layer that puts propagation, budgeted
//! retries, a circuit breaker and a per-attempt timeout around any tower HTTP client, in the
//! order that keeps a failing upstream from being hammered.
//!
//! ```text
//! caller ─▶ request id, trace context, priority   once per call
//!        ─▶ retry (budget, backoff, deadline)      decides whether to send again
//!        ─▶ circuit breaker (client mode)         sees, and may refuse, every attempt
//!        ─▶ attempt timeout                        bounds every attempt
//!        ─▶ your client (hyper-util, reqwest through tower, any Service<Request<_>>)
//! ```
//!
//! Why this order, outermost first:
//!
//! - **Propagation outside the retries.** The request id, the `traceparent` of one client span
//!   and the priority class are properties of the call, not of an attempt: they are set once, on
//!   the request the retry layer replays, so every attempt carries the same ones and the client
//!   span covers the whole call (each attempt is a `retry_attempt` span inside it).
//! - **The budget outside the breaker.** Finagle and Envoy keep the retry budget at the client,
//!   above the per-upstream breaker: the budget bounds how much extra load failed retries may
//!   add (20 % of the calls plus 10 per second by default), whatever the breaker's state.
//! - **The breaker inside the retries.** The breaker of an upstream must see every attempt, not
//!   only the calls that ran out of retries, or three failed attempts count as one failure and
//!   it opens three times too late. When it is open it fails the attempt at once, and the retry
//!   layer classifies that refusal as not retryable: an open breaker ends the call immediately,
//!   with no backoff sleeps and no attempts against an upstream known to be down.
//! - **The timeout inside the breaker.** The breaker ignores a call cancelled before its answer
//!   (a caller that gave up says nothing about the upstream), so a timeout outside it, such as
//!   the retry layer's own `attempt_timeout`, would hide a hanging upstream from it forever. Here
//!   the timeout is the breaker's inner service: a timed-out attempt is a failed call the breaker
//!   counts, and a retryable failure for the retry layer. That is why this stack uses its own
//!   typed timeout instead of `RetryConfig::attempt_timeout` (refused in `[clients.NAME.retry]`)
//!   or tower's `Timeout` (whose boxed error would hide the client's own error type).
//!
//! State is created once, when the layer is built: the retry budget and the breaker are shared by
//! every service the layer makes and every clone, so they count all the traffic to the upstream
//! ([`Stack::client`](crate::Stack::client) builds one layer per `[clients.NAME]` section).
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client as HyperClient, rt::TokioExecutor};
//! use palisade::{client::ClientLayer, retry::ReplayBody};
//! use tower::Layer;
//!
//! # fn main() -> Result<(), palisade::core::ConfigError> {
//! let payments = ClientLayer::builder("payments")
//!     .attempt_timeout(Duration::from_millis(500))
//!     .build()?;
//! // The inner client takes `ReplayBody<B>` (bodies the retry layer can send again); callers
//! // send `Request<B>`.
//! let client = payments.layer(
//!     HyperClient::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>(),
//! );
//! # let _ = client; Ok(()) }
//! ```
//!
//! Errors are one [`ClientError`]: the upstream's own error, a timed-out attempt, or an open
//! breaker (with its remaining open time, for a `Retry-After`). Upstream responses, 5xx
//! included, are responses: the retry layer retries 429, 502, 503 and 504, and the breaker counts
//! 5xx as failures.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body::Body;
use palisade_circuit_breaker::{
    Breaker, BreakerError, CallGuard, CircuitBreakerConfig, CircuitBreakerHttpClient,
    CircuitBreakerLayer, Rejected,
};
use palisade_core::{ConfigError, EnforcementMode, ResponseBody, check_name};
use palisade_loadshed_priority::{PropagatePriority, PropagatePriorityLayer};
use palisade_request_id::{ForwardRequestId, ForwardRequestIdLayer};
use palisade_retry::{
    ClassifyError, ReplayBody, Retrier, Retry, RetryBudget, RetryConfig, RetryLayer,
};
use palisade_telemetry::{ClientFuture, TracePropagation, TracePropagationLayer};
use pin_project::pin_project;
use tower::{Layer, Service};

/// The `[clients.NAME]` section: how calls to one upstream are retried, broken and timed out.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `attempt_timeout` | 1 s | time limit of each attempt, to its response headers; a timed-out attempt is a failure for the breaker and retryable |
/// | `retry` | see [`RetryConfig`] | attempts, backoff, deadline, statuses, budget (`[clients.NAME.retry]`, `[clients.NAME.retry.budget]`); its `attempt_timeout` must stay unset |
/// | `circuit_breaker` | see [`CircuitBreakerConfig`], but `consecutive_failures` 0 (off) and `minimum_calls` 20 | the upstream's breaker (`[clients.NAME.circuit_breaker]`) |
///
/// A client's breaker sees every attempt, often hundreds a second, so it decides on the failure
/// rate of its window alone: five failures in a row, the server breaker's second trigger, come by
/// chance every few seconds to an upstream that fails one attempt in five at 500 attempts a
/// second, and would open the breaker on a service the retries were saving
/// (`cargo xtask bench retry`). Set `consecutive_failures` to bring the trigger back for a client
/// that calls rarely. Through [`PalisadeConfig`](crate::PalisadeConfig), a partial
/// `[clients.NAME.circuit_breaker]` table keeps these two defaults; a `ClientConfig` deserialized
/// on its own fills a partial `circuit_breaker` table from the server breaker's defaults.
///
/// The `name` keys of `retry` and `circuit_breaker` are set to the section's name, so the metrics
/// of one client carry one label (`client="NAME"`, `breaker="NAME"`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The time limit of each attempt.
    #[serde(with = "palisade_core::duration_secs")]
    pub attempt_timeout: Duration,
    /// Retries and their budget.
    pub retry: RetryConfig,
    /// The upstream's circuit breaker.
    pub circuit_breaker: CircuitBreakerConfig,
}

/// The default [`ClientConfig::attempt_timeout`]: long for a call inside a data centre, short
/// enough that two attempts fit in the retry layer's default 2 s deadline.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            retry: RetryConfig::default(),
            circuit_breaker: client_breaker_defaults(),
        }
    }
}

/// A client breaker's `consecutive_failures`: off ([`ClientConfig`] explains why).
pub(crate) const CLIENT_CONSECUTIVE_FAILURES: u32 = 0;
/// A client breaker's `minimum_calls`: enough that one unlucky start (3 failures in the first 5
/// attempts happens to 6 % of clients of an upstream failing one attempt in five) does not open
/// it; 10 in the first 20 happens to 0.3 %.
pub(crate) const CLIENT_MINIMUM_CALLS: u32 = 20;

/// [`CircuitBreakerConfig::default`] with the two client defaults. `palisade.toml` fills the same
/// two in under every `[clients.NAME.circuit_breaker]` that does not set them.
fn client_breaker_defaults() -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.consecutive_failures = CLIENT_CONSECUTIVE_FAILURES;
    config.minimum_calls = CLIENT_MINIMUM_CALLS;
    config
}

impl ClientConfig {
    /// Checks the section.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: a zero or absurd `attempt_timeout`, a
    /// `retry.attempt_timeout` (it would run outside the breaker; use `attempt_timeout`), or an
    /// invalid `retry` or `circuit_breaker` table.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.attempt_timeout.is_zero() || self.attempt_timeout > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "attempt_timeout",
                format!(
                    "{:?} must be above zero and at most an hour",
                    self.attempt_timeout
                ),
            ));
        }
        if self.retry.attempt_timeout.is_some() {
            return Err(ConfigError::new(
                "retry.attempt_timeout",
                "set the client's attempt_timeout instead: it runs inside the circuit breaker, \
                 which then counts timed-out attempts as failures",
            ));
        }
        self.retry.validate().map_err(|e| e.within("retry"))?;
        self.circuit_breaker
            .validate()
            .map_err(|e| e.within("circuit_breaker"))
    }
}

/// Builds a [`ClientLayer`]; every setter documents its default.
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    name: String,
    config: ClientConfig,
    budget: Option<RetryBudget>,
    breaker: Option<Breaker>,
    request_id: ForwardRequestIdLayer,
    trace: TracePropagationLayer,
    priority: PropagatePriorityLayer,
}

impl ClientBuilder {
    /// The whole section at once (what [`Stack::client`](crate::Stack::client) reads from
    /// `[clients.NAME]`).
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The time limit of each attempt, to its response headers. Default 1 s.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = timeout;
        self
    }

    /// The retry settings. Default [`RetryConfig::default`] (3 attempts, 2 s deadline, 20 %
    /// budget); the name is the client's.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.config.retry = retry;
        self
    }

    /// The breaker settings. Default [`CircuitBreakerConfig::default`]; the name is the client's.
    /// Ignored when [`breaker`](Self::breaker) gives one.
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.config.circuit_breaker = breaker;
        self
    }

    /// Use `breaker` (shared with guard calls or other clients of the same upstream) instead of
    /// creating one. Default: a new breaker from the `circuit_breaker` settings.
    pub fn breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Use `budget` (shared with other clients or retriers) instead of creating one. Default: a
    /// new budget from the `retry.budget` settings.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// How the request id is forwarded. Default [`ForwardRequestIdLayer::new`] (`x-request-id`).
    pub fn request_id(mut self, layer: ForwardRequestIdLayer) -> Self {
        self.request_id = layer;
        self
    }

    /// How the trace context is propagated. Default [`TracePropagationLayer::new`] (a client span
    /// at `INFO` around the call).
    pub fn trace(mut self, layer: TracePropagationLayer) -> Self {
        self.trace = layer;
        self
    }

    /// The header the priority class is sent in. Default `x-priority`.
    pub fn priority_header(mut self, header: HeaderName) -> Self {
        self.priority = PropagatePriorityLayer::with_header(header);
        self
    }

    /// Observe only: the retry layer counts what it would retry and never retries; the breaker
    /// starts in its metrics-only state and never refuses.
    pub fn observe_only(mut self) -> Self {
        self.config.retry.mode = EnforcementMode::ObserveOnly;
        self.config.circuit_breaker.mode = EnforcementMode::ObserveOnly;
        self
    }

    /// The settings so far.
    pub fn config_ref(&self) -> &ClientConfig {
        &self.config
    }

    /// Validates, creates the budget and the breaker, and registers their metrics.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key (`name`, `attempt_timeout`, `retry.*`,
    /// `circuit_breaker.*`).
    pub fn build(self) -> Result<ClientLayer, ConfigError> {
        let Self {
            name,
            mut config,
            budget,
            breaker,
            request_id,
            trace,
            priority,
        } = self;
        check_name(&name)?;
        config.retry.name = name.clone().into();
        config.circuit_breaker.name = name.clone().into();
        config.validate()?;
        let retry = config.retry;
        let mut builder = RetryLayer::builder()
            .name(retry.name)
            .mode(retry.mode)
            .max_attempts(retry.max_attempts)
            .base_delay(retry.base_delay)
            .max_delay(retry.max_delay)
            .deadline(retry.deadline)
            .max_retry_after(retry.max_retry_after)
            .retry_statuses(retry.retry_statuses)
            .max_replay_body(retry.max_replay_body)
            .budget_config(retry.budget)
            .classify_errors(NotRejected);
        if let Some(after) = retry.hedge_after {
            builder = builder.hedge_after(after);
        }
        if let Some(budget) = budget {
            builder = builder.budget(budget);
        }
        let retry = builder.build().map_err(|e| e.within("retry"))?;
        let breaker = match breaker {
            Some(breaker) => breaker,
            None => Breaker::from_config(config.circuit_breaker)
                .map_err(|e| e.within("circuit_breaker"))?,
        };
        Ok(ClientLayer {
            name,
            request_id,
            trace,
            priority,
            retry,
            breaker: CircuitBreakerLayer::new(breaker.clone()),
            breaker_handle: breaker,
            attempt_timeout: config.attempt_timeout,
        })
    }
}

/// The resilient client stack as one layer; see the [module docs](self) for the order and why.
///
/// Cheap to clone; clones and every [`Client`] it makes share one retry budget and one breaker.
#[derive(Clone)]
pub struct ClientLayer {
    name: String,
    request_id: ForwardRequestIdLayer,
    trace: TracePropagationLayer,
    priority: PropagatePriorityLayer,
    retry: RetryLayer<NotRejected>,
    breaker: CircuitBreakerLayer,
    breaker_handle: Breaker,
    attempt_timeout: Duration,
}

impl fmt::Debug for ClientLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLayer")
            .field("name", &self.name)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientLayer {
    /// A builder for the client of the upstream `name` (the `client` and `breaker` label of its
    /// metrics: 1 to 64 characters of `[A-Za-z0-9_.-]`), from the defaults.
    pub fn builder(name: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            name: name.into(),
            config: ClientConfig::default(),
            budget: None,
            breaker: None,
            request_id: ForwardRequestIdLayer::new(),
            trace: TracePropagationLayer::new(),
            priority: PropagatePriorityLayer::new(),
        }
    }

    /// The client of `name` configured by `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key (see [`ClientBuilder::build`]).
    pub fn from_config(name: impl Into<String>, config: ClientConfig) -> Result<Self, ConfigError> {
        Self::builder(name).config(config).build()
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream's breaker: its state, and the operators' controls (force open, reset).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker_handle
    }

    /// The retry budget shared by every clone.
    pub fn budget(&self) -> &RetryBudget {
        self.retry.budget()
    }

    /// A [`Retrier`] with the client's retry settings and budget, for calls to the same upstream
    /// that are not made through this client.
    pub fn retrier(&self) -> Retrier {
        self.retry.retrier()
    }

    /// The time limit of each attempt.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let attempt = AttemptTimeout {
            inner,
            limit: self.attempt_timeout,
        };
        let guarded = self.breaker.http_client().layer(attempt);
        let retried = self.retry.layer(guarded);
        let propagated = self
            .request_id
            .layer(self.trace.layer(self.priority.layer(retried)));
        Client { inner: propagated }
    }
}

type Stacked<S> = ForwardRequestId<
    TracePropagation<
        PropagatePriority<Retry<CircuitBreakerHttpClient<AttemptTimeout<S>>, NotRejected>>,
    >,
>;

/// The service of [`ClientLayer`]: takes `Request<B>`, calls the inner client with
/// `Request<ReplayBody<B>>`, answers `Response<ResponseBody<_, CallGuard>>` (the breaker times the
/// call until the body ends) or a [`ClientError`].
pub struct Client<S> {
    inner: Stacked<S>,
}

impl<S: Clone> Clone for Client<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for Client<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Send,
    RB: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<RB, CallGuard>>;
    type Error = ClientError<S::Error>;
    type Future = ResponseFuture<RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ClientError::from_retry)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
        }
    }
}

type Attempted<E> = BreakerError<AttemptError<E>>;

/// The response future of [`Client`].
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<RB, E> {
    #[pin]
    inner: ClientFuture<RetryFuture<RB, E>>,
}

type RetryFuture<RB, E> =
    palisade_retry::ResponseFuture<Response<ResponseBody<RB, CallGuard>>, Attempted<E>>;

impl<RB, E> fmt::Debug for ResponseFuture<RB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<RB, E> Future for ResponseFuture<RB, E> {
    type Output = Result<Response<ResponseBody<RB, CallGuard>>, ClientError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(ClientError::from_retry))
    }
}

/// Why a call through a [`Client`] failed (an upstream's error responses are responses, not
/// errors).
#[derive(Debug)]
pub enum ClientError<E> {
    /// The last attempt failed with the inner client's error (connection refused, reset, ...).
    Upstream(E),
    /// The last attempt had no response headers within the attempt timeout (the duration).
    Timeout(Duration),
    /// The upstream's breaker is open: the attempt was not sent, and no more were tried.
    CircuitOpen(Rejected),
}

impl<E> ClientError<E> {
    fn from_retry(error: palisade_retry::RetryError<Attempted<E>>) -> Self {
        match error {
            palisade_retry::RetryError::Inner(BreakerError::Rejected(rejected)) => {
                Self::CircuitOpen(rejected)
            }
            palisade_retry::RetryError::Inner(BreakerError::Inner(AttemptError::Inner(e))) => {
                Self::Upstream(e)
            }
            palisade_retry::RetryError::Inner(BreakerError::Inner(AttemptError::Timeout(t)))
            | palisade_retry::RetryError::AttemptTimeout(t) => Self::Timeout(t),
        }
    }

    /// The breaker's refusal (with the remaining open time), if the breaker was open.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            Self::CircuitOpen(rejected) => Some(rejected),
            _ => None,
        }
    }

    /// Whether the breaker was open.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Self::CircuitOpen(_))
    }

    /// Whether the last attempt timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// The inner client's error, if that is how the last attempt failed.
    pub fn into_upstream(self) -> Option<E> {
        match self {
            Self::Upstream(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for ClientError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upstream(e) => e.fmt(f),
            Self::Timeout(t) => write!(f, "no response within {} ms", t.as_millis()),
            Self::CircuitOpen(rejected) => rejected.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ClientError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Upstream(e) => Some(e),
            Self::Timeout(_) => None,
            Self::CircuitOpen(rejected) => Some(rejected),
        }
    }
}

/// The retry classifier of the stack: everything the breaker let through and that failed may be
/// retried (transport errors, timeouts); a refusal of the breaker may not, so an open breaker
/// ends the call at once.
#[derive(Debug, Clone, Copy)]
struct NotRejected;

impl<E> ClassifyError<Attempted<E>> for NotRejected {
    fn is_retryable(&self, error: &Attempted<E>) -> bool {
        !error.is_rejected()
    }
}

/// The inner client's error, or the attempt's timeout.
#[derive(Debug)]
enum AttemptError<E> {
    Inner(E),
    Timeout(Duration),
}

/// The per-attempt timeout, inside the breaker (see the module docs).
#[derive(Debug, Clone)]
struct AttemptTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S, R> Service<R> for AttemptTimeout<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = AttemptError<S::Error>;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(AttemptError::Inner)
    }

    fn call(&mut self, request: R) -> Self::Future {
        TimeoutFuture {
            inner: tokio::time::timeout(self.limit, self.inner.call(request)),
            limit: self.limit,
        }
    }
}

#[pin_project]
struct TimeoutFuture<F> {
    #[pin]
    inner: tokio::time::Timeout<F>,
    limit: Duration,
}

impl<F, T, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, AttemptError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(result) => result.map_err(AttemptError::Inner),
            Err(_) => Err(AttemptError::Timeout(*this.limit)),
        })
    }
}
