//! The server layer against a real server on 127.0.0.1 and a real HTTP/1.1 client.

mod common;

use std::{convert::Infallible, net::SocketAddr};

use axum::{
    Json, Router,
    body::Body,
    extract::Request,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use common::{Counts, app, echo, is_uuid};
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use palisade_core::{EnforcementMode, NoGuard, Rejection};
use palisade_request_id::{
    ForwardRequestId, ForwardRequestIdLayer, RequestId, RequestIdLayer, SpanLevel, TrustPolicy,
};
use palisade_testkit::{Client, TestResponse, TestServer};
use serde_json::Value;
use tower::{Layer, ServiceExt};

async fn get_with(server: &TestServer, headers: &[(&str, &str)]) -> TestResponse {
    let mut request = http::Request::get(server.url("/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Client::new()
        .send(request.body(Full::default()).unwrap())
        .await
}

/// The id on the response, checked to be the one the handler saw everywhere.
fn consistent_id(response: &TestResponse) -> String {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let seen = response.json();
    let id = response
        .header("x-request-id")
        .expect("x-request-id on the response");
    assert_eq!(response.headers.get_all("x-request-id").iter().count(), 1);
    assert_eq!(seen["id"], id, "extractor");
    assert_eq!(seen["current"], id, "current request id");
    id.to_owned()
}

#[tokio::test]
async fn generates_a_uuid_v7_when_none_comes_in() {
    let server = TestServer::start(app(RequestIdLayer::new())).await;
    let response = get_with(&server, &[]).await;
    let id = consistent_id(&response);
    assert!(is_uuid(&id, 7), "{id}");
    assert_eq!(
        response.json()["x-request-id"],
        id.as_str(),
        "set on the request too"
    );
    let again = consistent_id(&get_with(&server, &[]).await);
    assert_ne!(id, again, "fresh per request");
    server.shutdown().await;
}

#[tokio::test]
async fn v4_format_is_available() {
    let layer = RequestIdLayer::builder()
        .format(palisade_request_id::IdFormat::UuidV4)
        .build()
        .unwrap();
    let server = TestServer::start(app(layer)).await;
    let id = consistent_id(&get_with(&server, &[]).await);
    assert!(is_uuid(&id, 4), "{id}");
    server.shutdown().await;
}

#[tokio::test]
async fn preserves_a_valid_incoming_id() {
    let server = TestServer::start(app(RequestIdLayer::new())).await;
    for incoming in [
        "abc",
        "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
        "Root-1:a.b_c-d",
        &"x".repeat(128),
    ] {
        let response = get_with(&server, &[("x-request-id", incoming)]).await;
        assert_eq!(consistent_id(&response), incoming);
        assert_eq!(response.json()["x-request-id"], incoming);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn replaces_an_invalid_incoming_id() {
    let server = TestServer::start(app(RequestIdLayer::new())).await;
    let too_long = "x".repeat(129);
    let huge = "y".repeat(16 * 1024);
    for incoming in [
        too_long.as_str(),
        huge.as_str(),
        "two words",
        "a,b",
        "quote\"d",
        "semi;colon",
        "slash/ed",
        "<script>",
    ] {
        let response = get_with(&server, &[("x-request-id", incoming)]).await;
        let id = consistent_id(&response);
        assert!(is_uuid(&id, 7), "{incoming:?} -> {id}");
        // The handler sees the replacement, not the original.
        assert_eq!(response.json()["x-request-id"], id.as_str());
        assert!(!response.text().contains(incoming));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_repeated_header_is_ambiguous_and_replaced() {
    let server = TestServer::start(app(RequestIdLayer::new())).await;
    let response = get_with(&server, &[("x-request-id", "one"), ("x-request-id", "two")]).await;
    let id = consistent_id(&response);
    assert!(is_uuid(&id, 7), "{id}");
    server.shutdown().await;
}

#[tokio::test]
async fn obs_text_bytes_are_replaced() {
    // Bytes a client library refuses to send, written on the wire by hand.
    let server = TestServer::start(app(RequestIdLayer::new())).await;
    let raw =
        b"GET / HTTP/1.1\r\nhost: x\r\nx-request-id: caf\xc3\xa9\r\nconnection: close\r\n\r\n";
    let answer =
        palisade_testkit::raw_exchange(server.addr(), raw, std::time::Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-request-id:"))
        .expect("id header");
    let id = line.split_once(':').unwrap().1.trim();
    assert!(is_uuid(id, 7), "{id}");
    server.shutdown().await;
}

#[tokio::test]
async fn aliases_are_read_and_the_main_header_is_set() {
    let layer = RequestIdLayer::builder()
        .alias("x-correlation-id")
        .build()
        .unwrap();
    let server = TestServer::start(app(layer)).await;

    let response = get_with(&server, &[("x-correlation-id", "corr-1")]).await;
    assert_eq!(consistent_id(&response), "corr-1");
    assert_eq!(response.json()["x-request-id"], "corr-1");
    assert!(
        response.header("x-correlation-id").is_none(),
        "response uses the main header"
    );

    // The main header wins over an alias.
    let response = get_with(
        &server,
        &[("x-correlation-id", "corr-2"), ("x-request-id", "main-2")],
    )
    .await;
    assert_eq!(consistent_id(&response), "main-2");

    // An invalid alias is replaced, on the alias too.
    let response = get_with(&server, &[("x-correlation-id", "bad value")]).await;
    let id = consistent_id(&response);
    assert!(is_uuid(&id, 7));
    assert_eq!(response.json()["x-correlation-id"], id.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn a_custom_header_name() {
    let layer = RequestIdLayer::builder().header("X-Trace").build().unwrap();
    let server = TestServer::start(
        Router::new()
            .route("/", get(|id: RequestId| async move { id.to_string() }))
            .layer(layer),
    )
    .await;
    let response = get_with(&server, &[("x-trace", "t-1"), ("x-request-id", "ignored")]).await;
    assert_eq!(response.header("x-trace"), Some("t-1"));
    assert_eq!(response.text(), "t-1");
    server.shutdown().await;
}

async fn kept_under(layer: RequestIdLayer) -> bool {
    let server = TestServer::start(app(layer)).await;
    let response = get_with(&server, &[("x-request-id", "from-the-peer")]).await;
    let id = consistent_id(&response);
    server.shutdown().await;
    if id == "from-the-peer" {
        true
    } else {
        assert!(is_uuid(&id, 7), "{id}");
        false
    }
}

#[tokio::test]
async fn trust_policies() {
    // The test client connects from 127.0.0.1.
    assert!(
        kept_under(RequestIdLayer::new()).await,
        "always is the default"
    );
    assert!(
        kept_under(
            RequestIdLayer::builder()
                .trust(TrustPolicy::Always)
                .build()
                .unwrap()
        )
        .await
    );
    assert!(
        !kept_under(
            RequestIdLayer::builder()
                .trust(TrustPolicy::Never)
                .build()
                .unwrap()
        )
        .await
    );
    assert!(
        kept_under(
            RequestIdLayer::builder()
                .trusted_peers(["127.0.0.0/8"])
                .build()
                .unwrap()
        )
        .await,
        "loopback trusted"
    );
    assert!(
        !kept_under(
            RequestIdLayer::builder()
                .trusted_peers(["10.0.0.0/8", "::1"])
                .build()
                .unwrap()
        )
        .await,
        "loopback v4 not trusted"
    );
    assert!(
        kept_under(
            RequestIdLayer::builder()
                .trusted_peers(["192.168.0.0/16", "127.0.0.1"])
                .build()
                .unwrap()
        )
        .await,
        "a single address"
    );
}

#[tokio::test]
async fn trusted_peers_without_connect_info_trusts_nobody() {
    // `oneshot` has no ConnectInfo<SocketAddr>: the peer is unknown, so untrusted.
    let layer = RequestIdLayer::builder()
        .trusted_peers(["0.0.0.0/0", "::/0"])
        .build()
        .unwrap();
    let request = http::Request::builder()
        .header("x-request-id", "from-the-peer")
        .body(Body::empty())
        .unwrap();
    let response = app(layer.clone()).oneshot(request).await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert!(is_uuid(id, 7), "{id}");

    // With ConnectInfo (as axum inserts it), the same layer trusts the peer.
    let mut request = http::Request::builder()
        .header("x-request-id", "from-the-peer")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((
            [203, 0, 113, 9],
            5555,
        ))));
    let response = app(layer).oneshot(request).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "from-the-peer");
}

#[tokio::test]
async fn the_extractor_needs_the_layer() {
    let router = Router::new()
        .route(
            "/required",
            get(|id: RequestId| async move { id.to_string() }),
        )
        .route(
            "/optional",
            get(|id: Option<RequestId>| async move { format!("{id:?}") }),
        );
    let server = TestServer::start(router.clone()).await;
    let client = Client::new();
    let missing = client.get(&server.url("/required")).await;
    assert_eq!(missing.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        missing.text().contains("RequestIdLayer"),
        "{}",
        missing.text()
    );
    assert_eq!(client.get(&server.url("/optional")).await.text(), "None");
    server.shutdown().await;

    let server = TestServer::start(router.layer(RequestIdLayer::new())).await;
    let response = get_with(&server, &[]).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let response = client.get(&server.url("/required")).await;
    assert_eq!(response.text(), response.header("x-request-id").unwrap());
    let response = client.get(&server.url("/optional")).await;
    assert_eq!(
        response.text(),
        format!(
            "Some(RequestId({}))",
            response.header("x-request-id").unwrap()
        )
    );
    server.shutdown().await;
}

/// A stand-in for an inner Palisade limiter: rejects every request with a 503 problem response.
async fn reject_all(_request: Request, _next: Next) -> Response {
    Rejection::builder(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
        .build()
        .expect("valid rejection")
        .response::<Body, NoGuard>()
        .into_response()
}

#[tokio::test]
async fn rejections_from_inner_layers_carry_the_id() {
    let router = Router::new()
        .route("/", get(echo))
        .layer(middleware::from_fn(reject_all))
        .layer(RequestIdLayer::new());
    let server = TestServer::start(router).await;

    let response = get_with(&server, &[]).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert!(is_uuid(response.header("x-request-id").unwrap(), 7));

    let response = get_with(&server, &[("x-request-id", "keep-me")]).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.header("x-request-id"), Some("keep-me"));

    let response = get_with(&server, &[("x-request-id", "no good")]).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(is_uuid(response.header("x-request-id").unwrap(), 7));
    server.shutdown().await;
}

/// A handler that answers with its own `x-request-id` header.
async fn handler_sets_the_header() -> Response {
    let mut response = "ok".into_response();
    response
        .headers_mut()
        .insert("x-request-id", HeaderValue::from_static("handler-made"));
    response
}

#[tokio::test]
async fn enforce_overwrites_a_response_header_set_inside() {
    let router = Router::new()
        .route("/", get(handler_sets_the_header))
        .layer(RequestIdLayer::new());
    let server = TestServer::start(router).await;
    let response = get_with(&server, &[]).await;
    assert!(is_uuid(response.header("x-request-id").unwrap(), 7));
    server.shutdown().await;
}

#[tokio::test]
async fn observe_only_never_rewrites_what_the_client_or_app_set() {
    let layer = RequestIdLayer::builder()
        .mode(EnforcementMode::ObserveOnly)
        .trusted_peers(["10.0.0.0/8"])
        .build()
        .unwrap();
    let server = TestServer::start(app(layer.clone())).await;

    // Untrusted but valid: kept (only counted).
    let response = get_with(&server, &[("x-request-id", "untrusted-ok")]).await;
    assert_eq!(consistent_id(&response), "untrusted-ok");

    // Invalid: the request reaches the handler unchanged, but the id everywhere this layer
    // controls (extractor, current id, response header) is a fresh one.
    let response = get_with(&server, &[("x-request-id", "not valid")]).await;
    let id = consistent_id(&response);
    assert!(is_uuid(&id, 7));
    assert_eq!(response.json()["x-request-id"], "not valid");

    // Missing: added, since adding replaces nothing.
    let response = get_with(&server, &[]).await;
    let id = consistent_id(&response);
    assert_eq!(response.json()["x-request-id"], id.as_str());
    server.shutdown().await;

    // A response header set by the app is left alone.
    let router = Router::new()
        .route("/", get(handler_sets_the_header))
        .layer(layer);
    let server = TestServer::start(router).await;
    assert_eq!(
        get_with(&server, &[]).await.header("x-request-id"),
        Some("handler-made")
    );
    server.shutdown().await;
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// `GET url` through the forwarding client; the downstream's answer (the id it received).
async fn call_downstream(client: ForwardRequestId<HttpClient>, url: String) -> String {
    let response = client
        .oneshot(http::Request::get(url).body(Full::default()).unwrap())
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    String::from_utf8(body.to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn handlers_forward_the_id_to_downstream_services() {
    // Downstream: echoes the id it received.
    let downstream = TestServer::start(Router::new().route(
        "/",
        get(|headers: http::HeaderMap| async move {
            headers
                .get("x-request-id")
                .map_or_else(String::new, |v| v.to_str().unwrap().to_owned())
        }),
    ))
    .await;
    let downstream_url = downstream.url("/");

    // Upstream: calls downstream through a hyper client wrapped in ForwardRequestIdLayer, once
    // directly and once from a spawned task that carries the id with `RequestId::scope`.
    let client = ForwardRequestIdLayer::new().layer(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>(),
    );
    let upstream = Router::new()
        .route(
            "/",
            get(move |id: RequestId| {
                let client = client.clone();
                let url = downstream_url.clone();
                async move {
                    let direct = call_downstream(client.clone(), url.clone()).await;
                    let spawned = tokio::spawn(id.scope(call_downstream(client, url)))
                        .await
                        .unwrap();
                    Json(serde_json::json!({ "direct": direct, "spawned": spawned }))
                }
            }),
        )
        .layer(RequestIdLayer::new());
    let upstream = TestServer::start(upstream).await;

    let response = get_with(&upstream, &[("x-request-id", "chain-7")]).await;
    let seen: Value = response.json();
    assert_eq!(seen["direct"], "chain-7");
    assert_eq!(seen["spawned"], "chain-7");

    let response = get_with(&upstream, &[]).await;
    let id = response.header("x-request-id").unwrap().to_owned();
    assert!(is_uuid(&id, 7));
    assert_eq!(response.json()["direct"], id.as_str());
    upstream.shutdown().await;
    downstream.shutdown().await;
}

#[tokio::test]
async fn metrics_count_generated_and_replaced_ids() {
    let counts = Counts::default();
    let _guard = metrics::set_default_local_recorder(&counts);
    let layer = RequestIdLayer::builder()
        .trusted_peers(["10.0.0.0/8"])
        .build()
        .unwrap();
    let service = app(layer);
    let send = |header: Option<&'static str>| {
        let mut request = http::Request::builder();
        if let Some(value) = header {
            request = request.header("x-request-id", value);
        }
        let mut request = request.body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((
                [127, 0, 0, 1],
                1,
            ))));
        service.clone().oneshot(request)
    };
    send(None).await.unwrap();
    send(None).await.unwrap();
    send(Some("bad id")).await.unwrap();
    send(Some("good-but-untrusted")).await.unwrap();
    assert_eq!(counts.get("palisade_request_id_generated_total"), 2);
    assert_eq!(
        counts.get("palisade_request_id_replaced_total{reason=invalid,mode=enforce}"),
        1
    );
    assert_eq!(
        counts.get("palisade_request_id_replaced_total{reason=untrusted,mode=enforce}"),
        1
    );

    // Observe-only counts what enforce mode would replace, while keeping the valid id.
    let observe = app(RequestIdLayer::builder()
        .trusted_peers(["10.0.0.0/8"])
        .observe_only()
        .build()
        .unwrap());
    let mut request = http::Request::builder()
        .header("x-request-id", "kept-anyway")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))));
    let response = observe.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "kept-anyway");
    assert_eq!(
        counts.get("palisade_request_id_replaced_total{reason=untrusted,mode=observe_only}"),
        1
    );

    let described = counts.described();
    assert!(described.contains(&"palisade_request_id_generated_total".to_owned()));
    assert!(described.contains(&"palisade_request_id_replaced_total".to_owned()));
}

#[tokio::test]
async fn custom_generators_are_used_and_checked_at_run_time() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    // Valid on the first call (the build-time sample), then invalid every other call.
    let layer = RequestIdLayer::builder()
        .generator(|| {
            let n = CALLS.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(2) {
                RequestId::new(&format!("gen-{n}")).unwrap()
            } else {
                RequestId::new("not/allowed").unwrap()
            }
        })
        .span_level(SpanLevel::Off)
        .build()
        .unwrap();
    let svc = app(layer);
    let first = svc
        .clone()
        .oneshot(http::Request::new(Body::empty()))
        .await
        .unwrap();
    // Call 1 (odd) is invalid: a UUID v7 stands in.
    assert!(is_uuid(
        first.headers()["x-request-id"].to_str().unwrap(),
        7
    ));
    let second = svc
        .oneshot(http::Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(second.headers()["x-request-id"], "gen-2");
}

#[tokio::test]
async fn service_errors_pass_through() {
    let svc = RequestIdLayer::new().layer(tower::service_fn(|_req: http::Request<()>| async {
        Err::<http::Response<()>, &str>("boom")
    }));
    assert_eq!(
        svc.oneshot(http::Request::new(())).await.unwrap_err(),
        "boom"
    );
    let ok = RequestIdLayer::new().layer(tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(()))
    }));
    let response = ok.oneshot(http::Request::new(())).await.unwrap();
    assert!(is_uuid(
        response.headers()["x-request-id"].to_str().unwrap(),
        7
    ));
}
