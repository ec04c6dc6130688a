//! The server layer as a tower service, on a paused clock: a call lasts until its response body
//! ends, body errors fail, cancelled requests are ignored, classifiers and overrides apply, the
//! state is shared by every `layer()` call and route, and the per-route / per-key registries are
//! bounded, named and evict idle breakers.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body as AxumBody, routing::get};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use palisade_circuit_breaker::{
    Breaker, CircuitBreakerBuilder, CircuitBreakerLayer, HttpClassifier, OVERFLOW_KEY, Outcome,
    State,
};
use tokio::time::{Sleep, advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A body that sends one chunk after `delay`, or fails then.
struct DelayedBody {
    sleep: Pin<Box<Sleep>>,
    fail: bool,
    done: bool,
}

impl DelayedBody {
    fn new(delay: Duration, fail: bool) -> Self {
        Self {
            sleep: Box::pin(sleep(delay)),
            fail,
            done: false,
        }
    }
}

impl Body for DelayedBody {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.done = true;
                Poll::Ready(Some(if self.fail {
                    Err("upstream reset mid-body")
                } else {
                    Ok(Frame::data(Bytes::from_static(b"late")))
                }))
            }
        }
    }
}

type Ready<B> = std::future::Ready<Result<Response<B>, Infallible>>;

fn delayed(
    delay: Duration,
    fail: bool,
) -> impl Service<
    Request<()>,
    Response = Response<DelayedBody>,
    Error = Infallible,
    Future = Ready<DelayedBody>,
> + Clone {
    service_fn(move |_: Request<()>| {
        std::future::ready(Ok(Response::new(DelayedBody::new(delay, fail))))
    })
}

fn status(
    code: u16,
) -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Ready<Full<Bytes>>,
> + Clone {
    service_fn(move |_: Request<()>| {
        let mut response = Response::new(Full::new(Bytes::from_static(b"x")));
        *response.status_mut() = StatusCode::from_u16(code).unwrap();
        std::future::ready(Ok(response))
    })
}

fn strict() -> CircuitBreakerBuilder {
    Breaker::builder()
        .count_window(10)
        .minimum_calls(2)
        .consecutive_failures(0)
}

#[tokio::test(start_paused = true)]
async fn a_call_lasts_until_its_body_ends() {
    let breaker = strict()
        .slow_calls(Duration::from_millis(100), 1.0)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    // Headers at once, body after 250 ms: a slow call.
    let response = layer
        .layer(delayed(Duration::from_millis(250), false))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(breaker.snapshot().calls, 0, "still streaming");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "late");
    let s = breaker.snapshot();
    assert_eq!((s.calls, s.slow_calls, s.failures), (1, 1, 0));
    // A second slow body: 100% slow over the minimum of 2 calls.
    let response = layer
        .layer(delayed(Duration::from_millis(250), false))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn body_errors_fail_and_dropped_bodies_keep_their_status() {
    let breaker = strict()
        .count_window(100)
        .minimum_calls(100)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    let response = layer
        .layer(delayed(Duration::from_millis(10), true))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.into_body().collect().await.is_err());
    assert_eq!(breaker.snapshot().failures, 1, "a 200 whose body broke");
    // The client goes away mid-body: the status (200) decides.
    let response = layer
        .layer(delayed(Duration::from_secs(5), false))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    drop(response);
    let s = breaker.snapshot();
    assert_eq!((s.calls, s.failures), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn cancelled_requests_are_ignored_and_service_errors_fail() {
    let breaker = strict().build().unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    let never = service_fn(|_: Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let cancelled = tokio::time::timeout(
        Duration::from_secs(1),
        layer.layer(never).oneshot(Request::new(())),
    )
    .await;
    assert!(cancelled.is_err());
    assert_eq!(breaker.snapshot().calls, 0);
    let erroring =
        service_fn(|_: Request<()>| async { Err::<Response<Full<Bytes>>, _>("connection reset") });
    for _ in 0..2 {
        let result = layer.layer(erroring).oneshot(Request::new(())).await;
        assert_eq!(result.unwrap_err(), "connection reset");
    }
    assert_eq!(breaker.state(), State::Open);
    // While open, rejections are responses even for a service that errors.
    let rejected = layer
        .layer(erroring)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "30");
    advance(Duration::from_millis(12_500)).await;
    let rejected = layer
        .layer(erroring)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(
        rejected.headers()["retry-after"],
        "18",
        "the remaining 17.5 s, rounded up"
    );
}

#[tokio::test(start_paused = true)]
async fn http_classification_and_overrides() {
    let breaker = strict().build().unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    for code in [200, 404, 400, 422] {
        let r = layer
            .layer(status(code))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        r.into_body().collect().await.unwrap();
    }
    let s = breaker.snapshot();
    assert_eq!((s.calls, s.failures), (4, 0), "4xx is the client's fault");
    let r = layer
        .layer(status(503))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    r.into_body().collect().await.unwrap();
    assert_eq!(breaker.snapshot().failures, 1);

    breaker.reset();
    let overridden = layer.with_classifier(
        HttpClassifier::new()
            .status(StatusCode::SERVICE_UNAVAILABLE, Outcome::Ignore)
            .status(StatusCode::NOT_FOUND, Outcome::Failure),
    );
    let r = overridden
        .layer(status(503))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    r.into_body().collect().await.unwrap();
    assert_eq!(breaker.snapshot().calls, 0, "503 ignored");
    for _ in 0..2 {
        let r = overridden
            .layer(status(404))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        r.into_body().collect().await.unwrap();
    }
    assert_eq!(breaker.state(), State::Open, "404 counted as a failure");
}

#[tokio::test(start_paused = true)]
async fn state_is_shared_by_every_layer_call_and_route() {
    let breaker = strict().build().unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    let hits = Arc::new(AtomicUsize::new(0));
    let (a, b) = (hits.clone(), hits.clone());
    let app: Router = Router::new()
        .route(
            "/a",
            get(move || async move {
                a.fetch_add(1, Ordering::SeqCst);
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route(
            "/b",
            get(move || async move {
                b.fetch_add(1, Ordering::SeqCst);
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route_layer(layer);
    for path in ["/a", "/b"] {
        let r = app
            .clone()
            .oneshot(Request::get(path).body(AxumBody::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        r.into_body().collect().await.unwrap();
    }
    assert_eq!(
        breaker.state(),
        State::Open,
        "one failure per route, one breaker"
    );
    let r = app
        .oneshot(Request::get("/a").body(AxumBody::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn per_route_breakers_are_named_after_the_route_template() {
    let layer = CircuitBreakerLayer::per_route(strict().name("api")).unwrap();
    let registry = layer.registry().unwrap().clone();
    let app: Router = Router::new()
        .route(
            "/items/{id}",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route("/health", get(|| async { "ok" }))
        .route_layer(layer);
    for path in ["/items/1", "/items/2", "/health"] {
        let r = app
            .clone()
            .oneshot(Request::get(path).body(AxumBody::empty()).unwrap())
            .await
            .unwrap();
        r.into_body().collect().await.unwrap();
    }
    let names: Vec<String> = registry
        .breakers()
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    assert_eq!(names, ["api:/health", "api:/items/{id}"]);
    assert_eq!(registry.get("/items/{id}").unwrap().state(), State::Open);
    assert_eq!(registry.get("/health").unwrap().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn per_key_registries_are_bounded_and_evict_idle_breakers() {
    let layer = CircuitBreakerLayer::per_key(
        strict()
            .name("tenant")
            .max_breakers(2)
            .idle_timeout(Duration::from_secs(60)),
        |request: &Request<()>| {
            request
                .headers()
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
        },
    )
    .unwrap();
    let registry = layer.registry().unwrap().clone();
    let mut svc = layer.layer(status(500));
    let mut call = async |tenant: Option<&str>| {
        let mut request = Request::new(());
        if let Some(t) = tenant {
            request.headers_mut().insert("x-tenant", t.parse().unwrap());
        }
        let r = svc.ready().await.unwrap().call(request).await.unwrap();
        let code = r.status().as_u16();
        r.into_body().collect().await.unwrap();
        code
    };
    for tenant in ["a", "a", "b", "c", "d"] {
        assert_eq!(call(Some(tenant)).await, 500);
    }
    assert_eq!(registry.len(), 2);
    assert_eq!(registry.get("a").unwrap().state(), State::Open);
    assert_eq!(call(Some("a")).await, 503);
    assert_eq!(registry.get("b").unwrap().snapshot().calls, 1);
    // c and d shared the overflow breaker: two failures opened it.
    let overflow = registry.get(OVERFLOW_KEY).unwrap();
    assert_eq!(overflow.name(), "tenant:_overflow");
    assert_eq!(overflow.state(), State::Open);
    // Without a key, requests pass unprotected.
    assert_eq!(call(None).await, 500);
    assert_eq!(call(None).await, 500);
    // Idleness is seen by sweeps (they run when a new key needs room). The sweep for "d" saw
    // both a and b; a was called after it, b was not. Two minutes later "e" needs room: b has
    // been idle for a whole sweep interval of at least the idle timeout and is evicted; a was
    // used since the last sweep, so it counts as seen now and stays.
    advance(Duration::from_secs(121)).await;
    assert_eq!(call(Some("e")).await, 500);
    assert!(registry.get("b").is_none());
    assert_eq!(registry.get("a").unwrap().state(), State::Open);
    assert_eq!(registry.get("e").unwrap().snapshot().calls, 1);
    // Another idle timeout without calls to a: the next new key evicts it.
    advance(Duration::from_secs(61)).await;
    assert_eq!(call(Some("f")).await, 500);
    assert!(registry.get("a").is_none());
    let mut keys: Vec<_> = registry
        .breakers()
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    keys.retain(|k| !k.ends_with(OVERFLOW_KEY));
    assert_eq!(keys, ["tenant:e", "tenant:f"]);
    // Oversized keys share the overflow breaker.
    // (The overflow breaker's wait is over: this call is its probe, which fails and reopens it.)
    let long = "x".repeat(200);
    assert_eq!(call(Some(&long)).await, 500);
    assert_eq!(overflow.snapshot().failed_recoveries, 1);
    assert_eq!(call(Some(&long)).await, 503);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_breaker_passes_everything() {
    let breaker = strict().build().unwrap();
    breaker.disable();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    for _ in 0..10 {
        let r = layer
            .layer(status(500))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
    }
    assert_eq!(breaker.snapshot().calls, 0);
}
