//! The layer on a real server (127.0.0.1:0, `ConnectInfo`) with a real HTTP/1.1 client: spoofed
//! `X-Forwarded-For` from an untrusted peer does not escape the limit, the same header from a
//! trusted proxy is honoured, per-route rules and `route_layer`, observe-only, and the 429.

use axum::{Router, routing::get};
use palisade_rate_limit::{ClientIp, PolicyConfig, RateLimitLayer};
use palisade_testkit::{Client, TestResponse, TestServer};

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .route("/login", get(|| async { "login" }))
        .route("/open", get(|| async { "open" }))
        .layer(layer)
}

async fn get_as(client: &Client, server: &TestServer, path: &str, xff: &str) -> TestResponse {
    client
        .get_with_header(&server.url(path), "x-forwarded-for", xff)
        .await
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit() {
    // Nothing trusted: the loopback peer is the client, whatever it claims.
    let layer = RateLimitLayer::builder()
        .policy("per_ip", PolicyConfig::per_minute(3))
        .build()
        .unwrap();
    let server = TestServer::start(app(layer)).await;
    let client = Client::new();
    let mut statuses = Vec::new();
    for i in 0..10 {
        let response = get_as(&client, &server, "/", &format!("198.51.100.{i}")).await;
        if response.status == 200 {
            assert_eq!(response.text(), "127.0.0.1", "the handler sees the peer");
        }
        statuses.push(response.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    server.shutdown().await;
}

#[tokio::test]
async fn the_same_header_from_a_trusted_proxy_is_honoured() {
    let layer = RateLimitLayer::builder()
        .policy("per_ip", PolicyConfig::per_minute(2))
        .trusted_proxies(["127.0.0.0/8"])
        .build()
        .unwrap();
    let server = TestServer::start(app(layer)).await;
    let client = Client::new();
    // Each forwarded client has its own budget; spoofed entries left of it change nothing.
    for i in 0..5 {
        let xff = format!("6.6.6.{i}, 198.51.100.{i}");
        let first = get_as(&client, &server, "/", &xff).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.text(), format!("198.51.100.{i}"));
        assert_eq!(get_as(&client, &server, "/", &xff).await.status, 200);
        let spoof = format!("1.2.3.4, 198.51.100.{i}");
        assert_eq!(get_as(&client, &server, "/", &spoof).await.status, 429);
    }
    // Several header lines are read in order, walking from the last.
    let request = http::Request::get(server.url("/"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-for", "203.0.113.77")
        .body(http_body_util::Full::default())
        .unwrap();
    let response = client.send(request).await;
    assert_eq!(response.text(), "203.0.113.77");
    server.shutdown().await;
}

#[tokio::test]
async fn per_route_rules_and_route_layer() {
    let layer = RateLimitLayer::builder()
        .policy("default", PolicyConfig::per_minute(5))
        .define_policy("login", PolicyConfig::per_minute(1))
        .rule("/login", ["login"])
        .rule("/open", Vec::<String>::new())
        .build()
        .unwrap();
    let server = TestServer::start(app(layer)).await;
    let client = Client::new();
    assert_eq!(client.get(&server.url("/login")).await.status, 200);
    assert_eq!(client.get(&server.url("/login")).await.status, 429);
    for _ in 0..5 {
        assert_eq!(client.get(&server.url("/")).await.status, 200);
    }
    assert_eq!(client.get(&server.url("/")).await.status, 429);
    for _ in 0..20 {
        assert_eq!(client.get(&server.url("/open")).await.status, 200);
    }
    // `Router::layer` covers the fallback too: unmatched paths (scanners) fall under the default
    // rule, whose budget is spent.
    assert_eq!(client.get(&server.url("/nowhere")).await.status, 429);
    server.shutdown().await;

    // `route_layer` on one route only: the others are not limited at all.
    let limit = RateLimitLayer::builder()
        .policy("login", PolicyConfig::per_minute(1))
        .build()
        .unwrap();
    let router = Router::new()
        .route("/login", get(|| async { "login" }))
        .route_layer(limit)
        .route("/", get(|| async { "home" }));
    let server = TestServer::start(router).await;
    assert_eq!(client.get(&server.url("/login")).await.status, 200);
    assert_eq!(client.get(&server.url("/login")).await.status, 429);
    for _ in 0..5 {
        assert_eq!(client.get(&server.url("/")).await.status, 200);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn observe_only_serves_everything_without_fields() {
    let layer = RateLimitLayer::builder()
        .policy("per_ip", PolicyConfig::per_minute(1))
        .observe_only()
        .build()
        .unwrap();
    let server = TestServer::start(app(layer)).await;
    let client = Client::new();
    for _ in 0..5 {
        let response = client.get(&server.url("/")).await;
        assert_eq!(response.status, 200);
        assert!(response.header("ratelimit").is_none());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_refusal_is_a_429_with_retry_after_fields_and_a_problem_body() {
    let layer = RateLimitLayer::builder()
        .policy("per_minute", PolicyConfig::per_minute(2))
        .policy("per_hour", PolicyConfig::per_hour(100))
        .legacy_headers(true)
        .build()
        .unwrap();
    let server = TestServer::start(app(layer)).await;
    let client = Client::new();
    let ok = client.get(&server.url("/")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("ratelimit-policy"),
        Some(r#""per_minute";q=2;w=60, "per_hour";q=100;w=3600"#)
    );
    assert_eq!(
        ok.header("ratelimit"),
        Some(r#""per_minute";r=1;t=30, "per_hour";r=99;t=36"#)
    );
    client.get(&server.url("/")).await;
    let refused = client.get(&server.url("/")).await;
    assert_eq!(refused.status, 429);
    // 30 s until the per-minute policy admits again (a real clock: 29 point something, rounded up).
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "{retry}");
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(refused.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    let field = refused.header("ratelimit").unwrap();
    assert!(field.starts_with(r#""per_minute";r=0;t="#), "{field}");
    assert!(field.contains(r#""per_hour";r=98;t="#), "{field}");
    let doc = refused.json();
    assert_eq!(doc["status"], 429);
    assert_eq!(doc["policy"], "per_minute");
    assert_eq!(doc["violated-policies"], serde_json::json!(["per_minute"]));
    server.shutdown().await;
}
