//! The layer on a real server with a real client: headers on successes, on the router's 404
//! fallback, on a rejection produced by a Palisade layer, per-route policies on sub-routers, and
//! HSTS behind a trusted TLS terminator.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{Request, Response, StatusCode},
    routing::get,
};
use bytes::Bytes;
use http_body_util::Full;
use palisade_core::{NoGuard, Rejection, ResponseBody, RetryAfter};
use palisade_security_headers::{Hsts, SecurityHeadersLayer, presets};
use palisade_testkit::{Client, TestResponse, TestServer};
use tower::{Layer, Service};

/// A stand-in for a Palisade limiter: rejects requests to `/busy` with the same prebuilt
/// `Rejection` response every Palisade layer returns, passes the rest through in
/// `ResponseBody`.
#[derive(Clone)]
struct RejectBusyLayer(Rejection);

impl<S> Layer<S> for RejectBusyLayer {
    type Service = RejectBusy<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RejectBusy {
            inner,
            rejection: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct RejectBusy<S> {
    inner: S,
    rejection: Rejection,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for RejectBusy<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody<Body, NoGuard>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() == "/busy" {
            let response = self.rejection.response::<Body, NoGuard>();
            return Box::pin(async move { Ok(response) });
        }
        let future = self.inner.call(request);
        Box::pin(async move { Ok(future.await?.map(ResponseBody::new)) })
    }
}

fn rejection() -> Rejection {
    Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "test_overload")
        .detail("The test limiter is full.")
        .retry_after(RetryAfter::new(Duration::from_secs(3)))
        .build()
        .expect("valid rejection")
}

fn assert_default_headers(response: &TestResponse) {
    let expect = [
        (
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        ),
        ("content-security-policy", presets::CSP_DEFAULT),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("permissions-policy", presets::PERMISSIONS_DEFAULT),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-site"),
        ("x-dns-prefetch-control", "off"),
        ("x-permitted-cross-domain-policies", "none"),
        ("origin-agent-cluster", "?1"),
    ];
    for (name, value) in expect {
        assert_eq!(
            response.header(name),
            Some(value),
            "{name} on a {} response",
            response.status
        );
    }
    assert!(response.header("server").is_none());
    assert!(response.header("x-powered-by").is_none());
}

fn app() -> Router {
    Router::new()
        .route(
            "/ok",
            get(|| async { ([("x-powered-by", "handler-framework 1.0")], "fine") }),
        )
        .route(
            "/framed",
            get(|| async { ([("x-frame-options", "SAMEORIGIN")], "may be framed") }),
        )
        .route("/busy", get(|| async { "never reached" }))
        .layer(RejectBusyLayer(rejection()))
        .layer(SecurityHeadersLayer::new())
}

#[tokio::test]
async fn headers_on_success_404_and_rejection() {
    let server = TestServer::start(app()).await;
    let client = Client::new();

    let ok = client.get(&server.url("/ok")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.text(), "fine");
    assert_default_headers(&ok);

    let missing = client.get(&server.url("/no/such/route")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_default_headers(&missing);

    let busy = client.get(&server.url("/busy")).await;
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_default_headers(&busy);
    // The rejection itself is untouched: its own headers and its problem+json body.
    assert_eq!(busy.header("retry-after"), Some("3"));
    assert_eq!(busy.header("cache-control"), Some("no-store"));
    assert_eq!(
        busy.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(busy.json()["reason"], "test_overload");

    // The handler's own value survives; the layer fills in the rest.
    let framed = client.get(&server.url("/framed")).await;
    assert_eq!(framed.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(framed.header("x-content-type-options"), Some("nosniff"));

    server.shutdown().await;
}

#[tokio::test]
async fn a_sub_router_carries_its_own_policy() {
    let api = Router::new()
        .route("/items", get(|| async { "[]" }))
        .route(
            "/cached",
            get(|| async { ([("cache-control", "public, max-age=60")], "[]") }),
        )
        .layer(SecurityHeadersLayer::api());
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .nest("/api", api)
        .layer(SecurityHeadersLayer::web_app());
    let server = TestServer::start(app).await;
    let client = Client::new();

    let page = client.get(&server.url("/")).await;
    assert_eq!(
        page.header("content-security-policy"),
        Some(presets::CSP_WEB_APP)
    );
    assert_eq!(page.header("x-frame-options"), Some("SAMEORIGIN"));
    assert!(page.header("cache-control").is_none());

    let items = client.get(&server.url("/api/items")).await;
    assert_eq!(
        items.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(items.header("x-frame-options"), Some("DENY"));
    assert_eq!(items.header("cache-control"), Some("no-store, max-age=0"));
    assert_eq!(items.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(
        items.header("cross-origin-opener-policy"),
        Some("same-origin")
    );
    assert_eq!(items.header("x-content-type-options"), Some("nosniff"));

    let cached = client.get(&server.url("/api/cached")).await;
    assert_eq!(cached.header("cache-control"), Some("public, max-age=60"));

    // Outside the sub-router, even a 404 gets the outer policy.
    let missing = client.get(&server.url("/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.header("content-security-policy"),
        Some(presets::CSP_WEB_APP)
    );

    server.shutdown().await;
}

#[tokio::test]
async fn hsts_behind_a_trusted_tls_terminator() {
    let layer = SecurityHeadersLayer::builder()
        .strict_transport_security(Hsts {
            only_over_https: true,
            trust_x_forwarded_proto: true,
            ..Hsts::default()
        })
        .build()
        .expect("valid policy");
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(layer);
    let server = TestServer::start(app).await;
    let client = Client::new();
    let request = |proto: Option<&str>| {
        let mut request = Request::get(server.url("/"));
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        request.body(Full::<Bytes>::default()).unwrap()
    };

    let plain = client.send(request(None)).await;
    assert!(plain.header("strict-transport-security").is_none());
    assert_eq!(plain.header("x-content-type-options"), Some("nosniff"));

    let terminated = client.send(request(Some("https"))).await;
    assert_eq!(
        terminated.header("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );

    let spoofed = client.send(request(Some("https, http"))).await;
    assert!(spoofed.header("strict-transport-security").is_none());

    server.shutdown().await;
}
