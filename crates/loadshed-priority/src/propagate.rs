//! Priority travels end to end: the class of the request being served is available to the code
//! serving it, and a client layer puts it on outgoing requests.

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use palisade_core::Priority;
use tower_layer::Layer;
use tower_service::Service;

tokio::task_local! {
    static CURRENT: Priority;
}

/// The class of the request the current task is serving, set by the
/// [`LoadShedLayer`](crate::LoadShedLayer) around the inner service; `None` outside such a task.
/// Handlers can also take `Priority` as an extractor.
pub fn current_priority() -> Option<Priority> {
    CURRENT.try_with(|p| *p).ok()
}

/// Runs `future` with `priority` as the [`current_priority`], for work spawned onto other tasks
/// on behalf of a request.
pub fn with_priority<F: Future>(
    priority: Priority,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Priority, F> {
    CURRENT.scope(priority, future)
}

/// A client layer: sets the priority header on outgoing requests to the class of the request
/// being served (the request's own `Priority` extension first, then [`current_priority`]), so a
/// downstream Palisade server sheds in the same order. A header the caller set is left alone.
///
/// ```
/// use palisade_loadshed_priority::PropagatePriorityLayer;
/// use tower::ServiceBuilder;
///
/// let client = ServiceBuilder::new()
///     .layer(PropagatePriorityLayer::new())
///     .service_fn(|request: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(request.headers().get("x-priority").cloned())
///     });
/// # let _ = client;
/// ```
#[derive(Debug, Clone)]
pub struct PropagatePriorityLayer {
    header: HeaderName,
}

impl Default for PropagatePriorityLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagatePriorityLayer {
    /// Writes the default `x-priority` header.
    pub fn new() -> Self {
        Self {
            header: HeaderName::from_static("x-priority"),
        }
    }

    /// Writes `header` instead.
    pub fn with_header(header: HeaderName) -> Self {
        Self { header }
    }
}

impl<S> Layer<S> for PropagatePriorityLayer {
    type Service = PropagatePriority<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagatePriority {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service of [`PropagatePriorityLayer`].
#[derive(Debug, Clone)]
pub struct PropagatePriority<S> {
    inner: S,
    header: HeaderName,
}

impl<S, B> Service<Request<B>> for PropagatePriority<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let priority = Priority::from_extensions(request.extensions()).or_else(current_priority);
        if let Some(priority) = priority
            && !request.headers().contains_key(&self.header)
        {
            request.headers_mut().insert(
                self.header.clone(),
                HeaderValue::from_static(priority.as_str()),
            );
        }
        self.inner.call(request)
    }
}
