//! The client layers: a breaker around a real hyper client talking to a failing upstream on
//! 127.0.0.1 (typed rejections carrying the remaining open time, one breaker per upstream host,
//! recovery), and around a plain tower service.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State as AxumState, http::StatusCode, routing::get};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use palisade_circuit_breaker::{
    Breaker, BreakerError, CircuitBreakerLayer, Outcome, ResultClassifier, State,
};
use palisade_testkit::TestServer;
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Clone, Default)]
struct Upstream {
    failing: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(&self) -> TestServer {
        let app = Router::new()
            .route(
                "/data",
                get(|AxumState(up): AxumState<Upstream>| async move {
                    up.hits.fetch_add(1, Ordering::SeqCst);
                    if up.failing.load(Ordering::SeqCst) {
                        (StatusCode::INTERNAL_SERVER_ERROR, "upstream broken")
                    } else {
                        (StatusCode::OK, "upstream data")
                    }
                }),
            )
            .with_state(self.clone());
        TestServer::start(app).await
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn request(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

/// Sends through `client` and reads the whole body (the call ends when the body does).
async fn send<S, B>(client: &mut S, url: &str) -> Result<(u16, Bytes), BreakerError<String>>
where
    S: Service<
            Request<Full<Bytes>>,
            Response = http::Response<B>,
            Error = BreakerError<hyper_util::client::legacy::Error>,
        >,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    match client.ready().await {
        Ok(ready) => match ready.call(request(url)).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                Ok((status, body))
            }
            Err(BreakerError::Rejected(r)) => Err(BreakerError::Rejected(r)),
            Err(BreakerError::Inner(e)) => Err(BreakerError::Inner(format!("{e:?}"))),
        },
        Err(e) => Err(BreakerError::Inner(format!("{e:?}"))),
    }
}

#[tokio::test]
async fn a_breaker_around_a_hyper_client_rejects_with_the_remaining_open_time() {
    let upstream = Upstream::default();
    let server = upstream.start().await;
    let breaker = Breaker::builder()
        .name("upstream")
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut client = CircuitBreakerLayer::new(breaker.clone())
        .http_client()
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let url = server.url("/data");
    assert_eq!(send(&mut client, &url).await.unwrap().0, 200);
    upstream.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let (status, body) = send(&mut client, &url).await.unwrap();
        assert_eq!((status, &body[..]), (500, &b"upstream broken"[..]));
    }
    assert_eq!(breaker.state(), State::Open);
    match send(&mut client, &url).await {
        Err(BreakerError::Rejected(r)) => {
            assert_eq!(r.breaker(), "upstream");
            assert_eq!(r.state(), State::Open);
            assert!(
                r.retry_in() <= Duration::from_secs(30) && r.retry_in() > Duration::from_secs(25),
                "{:?}",
                r.retry_in()
            );
            assert_eq!(r.retry_after_secs(), 30);
            assert!(r.to_string().contains("upstream"), "{r}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        upstream.hits(),
        3,
        "the rejected call never left the process"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn one_breaker_per_upstream_host_and_recovery_after_healing() {
    let (failing, healthy) = (Upstream::default(), Upstream::default());
    let (failing_server, healthy_server) = (failing.start().await, healthy.start().await);
    let (changes, mut seen) = mpsc::unbounded_channel();
    let layer = CircuitBreakerLayer::per_key(
        Breaker::builder()
            .name("upstream")
            .consecutive_failures(2)
            .wait_in_open(Duration::from_millis(200))
            .success_threshold(1)
            .automatic_transition(true)
            .on_state_change(move |c| {
                let _ = changes.send((c.breaker.to_owned(), c.to));
            }),
        |request: &Request<Full<Bytes>>| {
            request.uri().authority().map(http::uri::Authority::as_str)
        },
    )
    .unwrap();
    let registry = layer.registry().unwrap().clone();
    let mut client = layer
        .http_client()
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let (bad, good) = (failing_server.url("/data"), healthy_server.url("/data"));
    failing.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(send(&mut client, &bad).await.unwrap().0, 500);
    }
    let bad_key = failing_server.addr().to_string();
    assert_eq!(
        seen.recv().await.unwrap(),
        (format!("upstream:{bad_key}"), State::Open)
    );
    assert!(send(&mut client, &bad).await.unwrap_err().is_rejected());
    // The other upstream has its own breaker and is still served.
    assert_eq!(send(&mut client, &good).await.unwrap().0, 200);
    assert_eq!(registry.len(), 2);

    // The failing upstream heals: after the wait, one successful probe closes its breaker.
    failing.failing.store(false, Ordering::SeqCst);
    let half_open = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await;
    assert_eq!(
        half_open.unwrap().unwrap(),
        (format!("upstream:{bad_key}"), State::HalfOpen)
    );
    assert_eq!(send(&mut client, &bad).await.unwrap().0, 200);
    assert_eq!(registry.get(&bad_key).unwrap().state(), State::Closed);
    failing_server.shutdown().await;
    healthy_server.shutdown().await;
}

#[tokio::test]
async fn connection_errors_are_failures() {
    let upstream = Upstream::default();
    let server = upstream.start().await;
    let url = server.url("/data");
    server.shutdown().await;
    let breaker = Breaker::builder().consecutive_failures(2).build().unwrap();
    let mut client = CircuitBreakerLayer::new(breaker.clone())
        .http_client()
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    for _ in 0..2 {
        assert!(matches!(
            send(&mut client, &url).await,
            Err(BreakerError::Inner(_))
        ));
    }
    assert_eq!(breaker.state(), State::Open);
    assert!(send(&mut client, &url).await.unwrap_err().is_rejected());
}

#[tokio::test]
async fn a_breaker_around_any_tower_service() {
    let breaker = Breaker::builder().consecutive_failures(2).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let divide = service_fn(move |d: u32| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { 100u32.checked_div(d).ok_or("division by zero") }
    });
    // Not an HTTP service: `Ok` succeeds and `Err` fails.
    let mut svc = CircuitBreakerLayer::new(breaker.clone())
        .with_classifier(ResultClassifier)
        .client()
        .layer(divide);
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 25);
    for _ in 0..2 {
        match svc.ready().await.unwrap().call(0).await {
            Err(BreakerError::Inner(e)) => assert_eq!(e, "division by zero"),
            other => panic!("{other:?}"),
        }
    }
    match svc.ready().await.unwrap().call(5).await {
        Err(BreakerError::Rejected(r)) => assert_eq!(r.retry_in(), Duration::from_secs(30)),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A closure classifier: "division by zero" is the caller's mistake, not an outage.
    breaker.reset();
    let mut lenient = CircuitBreakerLayer::new(breaker.clone())
        .with_classifier(|r: &Result<u32, &'static str>| match r {
            Err("division by zero") => Outcome::Ignore,
            Err(_) => Outcome::Failure,
            Ok(_) => Outcome::Success,
        })
        .client()
        .layer(service_fn(|d: u32| async move {
            100u32.checked_div(d).ok_or("division by zero")
        }));
    for _ in 0..5 {
        assert!(lenient.ready().await.unwrap().call(0).await.is_err());
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0);
}
