//! A real axum upstream on 127.0.0.1 and hyper's real client wrapped by the layer: recovery on
//! retry, the budget's bound on the extra load against an upstream that always fails, 4xx and
//! `POST` sent once, bodies replayed, connection errors.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes as AxumBytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{any, get},
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, Error as ClientError, connect::HttpConnector},
    rt::TokioExecutor,
};
use palisade_retry::{BudgetConfig, ReplayBody, Retry, RetryError, RetryLayer};
use palisade_testkit::TestServer;
use tower::{Layer, ServiceExt};

#[derive(Clone, Default)]
struct Upstream {
    hits: Arc<Mutex<HashMap<&'static str, usize>>>,
    seen_ids: Arc<Mutex<HashMap<String, usize>>>,
    bodies: Arc<Mutex<Vec<AxumBytes>>>,
}

impl Upstream {
    fn hit(&self, route: &'static str) {
        *self.hits.lock().unwrap().entry(route).or_default() += 1;
    }

    fn hits(&self, route: &'static str) -> usize {
        self.hits.lock().unwrap().get(route).copied().unwrap_or(0)
    }

    async fn start(&self) -> TestServer {
        let app = Router::new()
            // The first attempt of each request (by its `x-id`) fails, the next succeeds.
            .route(
                "/flaky",
                any(
                    |State(up): State<Upstream>, headers: HeaderMap, body: AxumBytes| async move {
                        up.hit("flaky");
                        up.bodies.lock().unwrap().push(body);
                        let id = headers["x-id"].to_str().unwrap().to_owned();
                        let mut seen = up.seen_ids.lock().unwrap();
                        let n = seen.entry(id).or_default();
                        *n += 1;
                        if *n == 1 {
                            (StatusCode::SERVICE_UNAVAILABLE, "try again")
                        } else {
                            (StatusCode::OK, "done")
                        }
                    },
                ),
            )
            .route(
                "/down",
                get(|State(up): State<Upstream>| async move {
                    up.hit("down");
                    (StatusCode::SERVICE_UNAVAILABLE, "down")
                }),
            )
            .route(
                "/missing",
                get(|State(up): State<Upstream>| async move {
                    up.hit("missing");
                    (StatusCode::NOT_FOUND, "no such thing")
                }),
            )
            .with_state(self.clone());
        TestServer::start(app).await
    }
}

type Hyper = Client<HttpConnector, ReplayBody<Full<Bytes>>>;

fn hyper() -> Hyper {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Fast backoff: real sleeps would only slow the test down.
fn fast() -> palisade_retry::RetryBuilder {
    RetryLayer::builder()
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(2))
}

async fn send(
    client: &Retry<Hyper>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Bytes), RetryError<ClientError>> {
    let response = client.clone().oneshot(request).await?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    ))
}

fn get_with_id(url: &str, id: usize) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("x-id", id.to_string())
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn a_failed_first_attempt_recovers_on_retry() {
    let upstream = Upstream::default();
    let server = upstream.start().await;
    let client = fast().build().unwrap().layer(hyper());
    for id in 0..20 {
        let (status, body) = send(&client, get_with_id(&server.url("/flaky"), id))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (200, &b"done"[..]));
    }
    assert_eq!(upstream.hits("flaky"), 40, "one retry per request");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_always_fails_sees_only_the_budgeted_extra_load() {
    let upstream = Upstream::default();
    let server = upstream.start().await;
    let mut budget = BudgetConfig::default();
    budget.ratio = 0.2;
    budget.min_per_second = 0.0;
    let client = fast().budget_config(budget).build().unwrap().layer(hyper());
    let url = server.url("/down");
    let requests = 500;
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, sent) = (client.clone(), url.clone(), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            while sent.fetch_add(1, SeqCst) < requests {
                let request = Request::get(&url).body(Full::default()).unwrap();
                let (status, _) = send(&client, request).await.unwrap();
                assert_eq!(status, 503);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let hits = upstream.hits("down");
    // Three attempts each would be 1500; the budget allows 20 % of 500 = 100 retries, exactly,
    // less the fraction of a retry still unspent when the last request ended.
    assert!(
        hits <= requests + 100,
        "{hits} requests reached the upstream"
    );
    assert!(hits >= requests + 95, "the budget was used: {hits}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_404_is_not_retried() {
    let upstream = Upstream::default();
    let server = upstream.start().await;
    let client = fast().build().unwrap().layer(hyper());
    for _ in 0..10 {
        let request = Request::get(server.url("/missing"))
            .body(Full::default())
            .unwrap();
        let (status, body) = send(&client, request).await.unwrap();
        assert_eq!((status, &body[..]), (404, &b"no such thing"[..]));
    }
    assert_eq!(upstream.hits("missing"), 10);
    server.shutdown().await;
}

#[tokio::test]
async fn posts_are_retried_only_with_an_idempotency_key_and_a_replayable_body() {
    let upstream = Upstream::default();
    let server = upstream.start().await;
    let client = fast().max_replay_body(1024).build().unwrap().layer(hyper());
    let post = |id: usize, key: Option<&str>, body: Bytes| {
        let mut request = Request::post(server.url("/flaky")).header("x-id", id.to_string());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.body(Full::new(body)).unwrap()
    };

    let (status, _) = send(&client, post(1, None, Bytes::from_static(b"charge")))
        .await
        .unwrap();
    assert_eq!(status, 503, "a POST without a key is sent once");
    assert_eq!(upstream.hits("flaky"), 1);

    let (status, _) = send(&client, post(2, Some("k-2"), Bytes::from_static(b"charge")))
        .await
        .unwrap();
    assert_eq!(status, 200, "with a key it is retried");
    assert_eq!(upstream.hits("flaky"), 3);
    assert!(
        upstream.bodies.lock().unwrap()[1..]
            .iter()
            .all(|b| b == "charge")
    );

    let big = Bytes::from(vec![b'x'; 4096]);
    let (status, _) = send(&client, post(3, Some("k-3"), big.clone()))
        .await
        .unwrap();
    assert_eq!(status, 503, "a body over the replay limit is sent once");
    assert_eq!(upstream.hits("flaky"), 4);
    assert_eq!(upstream.bodies.lock().unwrap()[3], big, "and arrives whole");
    server.shutdown().await;
}

#[tokio::test]
async fn connection_errors_are_retried_then_returned() {
    // A port with nothing listening: every attempt is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let client = fast()
        .classify_errors(move |e: &ClientError| {
            counter.fetch_add(1, SeqCst);
            e.is_connect()
        })
        .build()
        .unwrap()
        .layer(hyper());
    let err = client
        .oneshot(Request::get(&url).body(Full::default()).unwrap())
        .await
        .unwrap_err();
    assert!(err.inner().is_some_and(ClientError::is_connect), "{err:?}");
    assert_eq!(attempts.load(SeqCst), 3, "three attempts, each classified");
}
