//! An in-process stand-in for a remote dependency (a database, another service) that operators can
//! break and mend at run time, so the failure-handling layers can be seen working. It is also an
//! HTTP service (`Service<http::Request<_>>`), so `/api/flaky` calls it through Palisade's client
//! stack exactly as it would call a remote one through hyper's client.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{body::Body, http::StatusCode};

/// The dependency's answer when it is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependencyDown;

impl std::fmt::Display for DependencyDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the dependency is failing")
    }
}

impl std::error::Error for DependencyDown {}

/// A dependency with a fixed latency that fails on demand. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Dependency {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    failing: AtomicBool,
    latency: Duration,
    calls: AtomicU64,
    failures: AtomicU64,
    /// Calls still to fail transiently (`503`), before the healthy answers resume.
    transient: AtomicU64,
}

impl Dependency {
    /// A healthy dependency that takes `latency` per call.
    pub fn new(latency: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                failing: AtomicBool::new(false),
                latency,
                calls: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                transient: AtomicU64::new(0),
            }),
        }
    }

    /// Makes every following call fail.
    pub fn fail(&self) {
        self.inner.failing.store(true, Ordering::Relaxed);
    }

    /// Makes every following call succeed.
    pub fn heal(&self) {
        self.inner.failing.store(false, Ordering::Relaxed);
        self.inner.transient.store(0, Ordering::Relaxed);
    }

    /// Makes the next `calls` HTTP calls fail transiently: `503`, which the client retries (a
    /// broken dependency answers `500` instead, which no retry would change).
    pub fn fail_next(&self, calls: u64) {
        self.inner.transient.store(calls, Ordering::Relaxed);
    }

    /// Takes one transient failure, if any are left.
    fn take_transient(&self) -> bool {
        self.inner
            .transient
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether calls currently fail.
    pub fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    /// Calls made so far, and how many of them failed.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.calls.load(Ordering::Relaxed),
            self.inner.failures.load(Ordering::Relaxed),
        )
    }

    /// One call: waits the latency, then answers or fails.
    ///
    /// # Errors
    ///
    /// [`DependencyDown`] while the dependency is failing.
    pub async fn call(&self) -> Result<&'static str, DependencyDown> {
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.inner.latency).await;
        if self.is_failing() {
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
            Err(DependencyDown)
        } else {
            Ok("fresh data from the dependency")
        }
    }
}

/// The dependency over HTTP: `200` with the data, `503` while failing transiently, `500` while
/// broken.
impl<B> tower::Service<axum::http::Request<B>> for Dependency {
    type Response = axum::http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: axum::http::Request<B>) -> Self::Future {
        let dependency = self.clone();
        Box::pin(async move {
            let transient = dependency.take_transient();
            let (status, body) = match dependency.call().await {
                Ok(_) if transient => {
                    dependency.inner.failures.fetch_add(1, Ordering::Relaxed);
                    (StatusCode::SERVICE_UNAVAILABLE, "overloaded, try again")
                }
                Ok(data) => (StatusCode::OK, data),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the dependency is failing",
                ),
            };
            let mut response = axum::http::Response::new(Body::from(body));
            *response.status_mut() = status;
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fails_and_heals_on_demand() {
        let dependency = Dependency::new(Duration::from_millis(5));
        assert!(dependency.call().await.is_ok());
        dependency.clone().fail();
        assert_eq!(dependency.call().await, Err(DependencyDown));
        dependency.heal();
        assert!(dependency.call().await.is_ok());
        assert_eq!(dependency.counts(), (3, 1));
    }
}
