//! The layer on a paused clock (`tokio::time::Instant`), through an axum router: exact admission,
//! refill, `Retry-After` rounding, the response fields, several policies, keys, rules, clients
//! behind proxies; metrics and backends in the submodule.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::*;

mod metrics_and_backends;

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .route("/login", get(|| async { "login" }))
        .route("/items/{id}", get(|| async { "item" }))
        .layer(layer)
}

async fn send_from(
    app: &Router,
    path: &str,
    peer: &str,
    headers: &[(&str, &str)],
) -> Response<Body> {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    let ip: IpAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    app.clone().oneshot(request).await.unwrap()
}

async fn send(app: &Router, path: &str) -> Response<Body> {
    send_from(app, path, "192.0.2.1", &[]).await
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap())
}

async fn body_json(response: Response<Body>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn one_policy(policy: PolicyConfig) -> RateLimitLayer {
    RateLimitLayer::builder()
        .policy("p", policy)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn exact_admission_burst_and_refill() {
    // 5 per 10 s: one every 2 s, bursts of 5.
    let app = app(one_policy(PolicyConfig::new(5, Duration::from_secs(10))));
    for _ in 0..5 {
        assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    }
    let refused = send(&app, "/").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), "2");
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Over the next 60 s exactly 30 more get through: the long-run rate, no boundary burst.
    let mut admitted = 0;
    for _ in 0..600 {
        tokio::time::advance(Duration::from_millis(100)).await;
        if send(&app, "/").await.status() == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 30);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_rounded_up_to_whole_seconds() {
    // 3 per 10 s, burst 1: one every 3.33 s.
    let app = app(one_policy(
        PolicyConfig::new(3, Duration::from_secs(10)).burst(1),
    ));
    assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    assert_eq!(header(&send(&app, "/").await, "retry-after"), "4");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(header(&send(&app, "/").await, "retry-after"), "3");
    tokio::time::advance(Duration::from_millis(2300)).await;
    // 33 ms left: still at least 1.
    assert_eq!(header(&send(&app, "/").await, "retry-after"), "1");
}

#[tokio::test(start_paused = true)]
async fn responses_carry_the_draft_fields() {
    let app = app(one_policy(PolicyConfig::per_minute(60).burst(10)));
    let ok = send(&app, "/").await;
    assert_eq!(header(&ok, "ratelimit-policy"), r#""p";q=60;w=60"#);
    assert_eq!(header(&ok, "ratelimit"), r#""p";r=9;t=1"#);
    for _ in 0..9 {
        send(&app, "/").await;
    }
    let refused = send(&app, "/").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "ratelimit"), r#""p";r=0;t=10"#);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "content-type"), "application/problem+json");
    let doc = body_json(refused).await;
    assert_eq!(doc["status"], 429);
    assert_eq!(doc["policy"], "p");
    assert_eq!(doc["violated-policies"][0], "p");
}

#[tokio::test(start_paused = true)]
async fn headers_can_be_off_or_legacy() {
    let off = app(RateLimitLayer::builder()
        .policy("p", PolicyConfig::per_minute(60))
        .headers(false)
        .build()
        .unwrap());
    let response = send(&off, "/").await;
    assert!(response.headers().get("ratelimit").is_none());
    let legacy = app(RateLimitLayer::builder()
        .policy("p", PolicyConfig::per_minute(60))
        .legacy_headers(true)
        .build()
        .unwrap());
    let response = send(&legacy, "/").await;
    assert_eq!(header(&response, "x-ratelimit-limit"), "60");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "59");
    assert_eq!(header(&response, "x-ratelimit-reset"), "1");
}

#[tokio::test(start_paused = true)]
async fn several_policies_all_must_admit_and_refusals_spend_nothing() {
    let layer = RateLimitLayer::builder()
        .policy("minute", PolicyConfig::per_minute(2))
        .policy("hour", PolicyConfig::per_hour(100))
        .build()
        .unwrap();
    let app = app(layer);
    assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    let second = send(&app, "/").await;
    assert_eq!(
        header(&second, "ratelimit-policy"),
        r#""minute";q=2;w=60, "hour";q=100;w=3600"#
    );
    assert_eq!(
        header(&second, "ratelimit"),
        r#""minute";r=0;t=60, "hour";r=98;t=72"#
    );
    for _ in 0..20 {
        let refused = send(&app, "/").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // The hour policy was not charged for any of the refusals.
        assert_eq!(
            header(&refused, "ratelimit"),
            r#""minute";r=0;t=60, "hour";r=98;t=72"#
        );
        assert_eq!(body_json(refused).await["policy"], "minute");
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    let ok = send(&app, "/").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        header(&ok, "ratelimit"),
        r#""minute";r=0;t=60, "hour";r=97;t=78"#
    );
}

#[tokio::test(start_paused = true)]
async fn keys_separate_clients_and_group_ipv6_prefixes() {
    let app = app(one_policy(PolicyConfig::per_minute(1)));
    assert_eq!(
        send_from(&app, "/", "192.0.2.1", &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send_from(&app, "/", "192.0.2.1", &[]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The same client seen by a dual-stack listener: its budget, not a new one.
    assert_eq!(
        send_from(&app, "/", "::ffff:192.0.2.1", &[]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send_from(&app, "/", "192.0.2.2", &[]).await.status(),
        StatusCode::OK
    );
    // One /64, two addresses: one budget.
    assert_eq!(
        send_from(&app, "/", "2001:db8:1:2::1", &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send_from(&app, "/", "2001:db8:1:2:ffff::9", &[])
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send_from(&app, "/", "2001:db8:1:3::1", &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn trusted_proxies_forward_the_client_and_spoofers_do_not() {
    let layer = RateLimitLayer::builder()
        .policy("p", PolicyConfig::per_minute(1))
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let app = app(layer);
    let xff = |v: &'static str| [("x-forwarded-for", v)];
    let via_lb = send_from(&app, "/", "10.0.0.1", &xff("6.6.6.6, 198.51.100.1")).await;
    assert_eq!(via_lb.status(), StatusCode::OK);
    // The handler sees the same client as the limit.
    let body = via_lb.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "198.51.100.1");
    assert_eq!(
        send_from(&app, "/", "10.0.0.1", &xff("7.7.7.7, 198.51.100.1"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send_from(&app, "/", "10.0.0.1", &xff("198.51.100.2"))
            .await
            .status(),
        StatusCode::OK
    );
    // An untrusted peer cannot escape its budget by inventing addresses.
    assert_eq!(
        send_from(&app, "/", "203.0.113.5", &xff("1.1.1.1"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send_from(&app, "/", "203.0.113.5", &xff("2.2.2.2"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn header_user_route_and_global_keys() {
    let mut config = RateLimitConfig::default();
    config.policies.insert(
        "api_key".into(),
        PolicyConfig::per_minute(1).key(KeySource::Header("x-api-key".into())),
    );
    config.policies.insert(
        "user".into(),
        PolicyConfig::per_minute(1).key(KeySource::User),
    );
    config.policies.insert(
        "route".into(),
        PolicyConfig::per_minute(2).key(KeySource::Route),
    );
    config.policies.insert(
        "global".into(),
        PolicyConfig::per_minute(3).key(KeySource::Global),
    );
    config.default_policies = vec!["api_key".into()];
    config.rules = vec![
        RuleConfig::new("/login", ["user"]),
        RuleConfig::new("/items/{id}", ["route"]),
        RuleConfig::new("/", ["global", "api_key"]),
    ];
    let layer = RateLimitLayer::from_config(config).unwrap();
    let app = app(layer).layer(axum::middleware::from_fn(
        |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
            if let Some(user) = request.headers().get("x-user").cloned() {
                let key = Key::from(bytes::Bytes::copy_from_slice(user.as_bytes()));
                request.extensions_mut().insert(RateLimitKey(key));
            }
            next.run(request).await
        },
    ));
    // User key: per user, anonymous requests uncounted.
    let user = |u: &'static str| [("x-user", u)];
    assert_eq!(
        send_from(&app, "/login", "192.0.2.1", &user("ann"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send_from(&app, "/login", "192.0.2.2", &user("ann"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send_from(&app, "/login", "192.0.2.1", &user("bob"))
            .await
            .status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        let anonymous = send_from(&app, "/login", "192.0.2.1", &[]).await;
        assert_eq!(anonymous.status(), StatusCode::OK);
        assert!(anonymous.headers().get("ratelimit").is_none());
    }
    // Route key: /items/1 and /items/2 share the template's budget.
    assert_eq!(send(&app, "/items/1").await.status(), StatusCode::OK);
    assert_eq!(
        send_from(&app, "/items/2", "192.0.2.9", &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "/items/3").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Global + API key on "/": the API key policy counts only requests with a key.
    let key = |k: &'static str| [("x-api-key", k)];
    assert_eq!(
        send_from(&app, "/", "192.0.2.1", &key("k1")).await.status(),
        StatusCode::OK
    );
    let second = send_from(&app, "/", "192.0.2.2", &key("k1")).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(second).await["policy"], "api_key");
    assert_eq!(
        send_from(&app, "/", "192.0.2.3", &[]).await.status(),
        StatusCode::OK
    );
    // Global: 3 per minute for everyone; the refusal spent nothing, so one is left.
    assert_eq!(
        send_from(&app, "/", "192.0.2.4", &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send_from(&app, "/", "192.0.2.5", &[]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn closures_compute_keys() {
    let layer = RateLimitLayer::builder()
        .policy("tenant", PolicyConfig::per_minute(1))
        .key_extractor("tenant", |request: &RequestInfo<'_>| {
            let tenant = request.uri().query()?.strip_prefix("tenant=")?;
            Some(Key::from(tenant.to_owned()))
        })
        .build()
        .unwrap();
    let app = app(layer);
    assert_eq!(send(&app, "/?tenant=a").await.status(), StatusCode::OK);
    assert_eq!(
        send_from(&app, "/?tenant=a", "192.0.2.7", &[])
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&app, "/?tenant=b").await.status(), StatusCode::OK);
    assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    assert!(
        RateLimitLayer::builder()
            .policy("p", PolicyConfig::per_minute(1))
            .key_extractor("nope", |_: &RequestInfo<'_>| None)
            .build()
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn rules_replace_the_defaults_and_can_exempt() {
    let layer = RateLimitLayer::builder()
        .policy("default", PolicyConfig::per_minute(1))
        .define_policy("login", PolicyConfig::per_minute(3))
        .rule("/login", ["login"])
        .rule("/items/{id}", Vec::<String>::new())
        .build()
        .unwrap();
    let app = app(layer);
    for _ in 0..3 {
        assert_eq!(send(&app, "/login").await.status(), StatusCode::OK);
    }
    assert_eq!(
        send(&app, "/login").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..10 {
        assert_eq!(send(&app, "/items/1").await.status(), StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_peer_share_one_budget() {
    let app = app(one_policy(PolicyConfig::per_minute(1)));
    let bare = || Request::get("/items/1").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(bare()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(bare()).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn layers_are_debug_and_report_policies() {
    let layer = one_policy(PolicyConfig::per_hour(100).burst(5));
    let text = format!("{layer:?}");
    assert!(text.contains("rate: 100"), "{text}");
    let policy = &layer.policies()[0];
    assert_eq!(policy.emission_interval(), Duration::from_secs(36));
    assert_eq!(policy.burst(), 5);
    assert!(RateLimitLayer::builder().build().is_err());
}

#[cfg(feature = "serde")]
#[test]
fn the_umbrella_toml_shape_parses() {
    #[derive(serde::Deserialize)]
    struct File {
        rate_limit: RateLimitConfig,
    }
    let file: File = toml::from_str(
        r#"
        [rate_limit]
        default_policies = ["per_ip", "per_ip_daily"]
        trusted_proxies = ["10.0.0.0/8", "fd00::/8"]
        forwarded_header = "x_forwarded_for"
        ipv6_prefix = 56
        max_keys = 200000
        headers = true
        legacy_headers = false
        mode = "enforce"

        [rate_limit.policies.per_ip]
        rate = 60
        period = 60
        burst = 20

        [rate_limit.policies.per_ip_daily]
        rate = 10000
        period = 86400

        [rate_limit.policies.login]
        rate = 5
        period = 60
        key = "client_ip"

        [rate_limit.policies.per_key]
        rate = 1000
        period = 3600
        key = { header = "x-api-key" }

        [[rate_limit.rules]]
        route = "/login"
        policies = ["login", "per_ip_daily"]

        [[rate_limit.rules]]
        route = "/api/{*rest}"
        policies = ["per_key"]
        "#,
    )
    .unwrap();
    let config = file.rate_limit;
    assert_eq!(config.policies["per_ip"].burst, Some(20));
    assert_eq!(
        config.policies["per_key"].key,
        KeySource::Header("x-api-key".into())
    );
    assert_eq!(config.ipv6_prefix, 56);
    RateLimitLayer::from_config(config).unwrap();
    let unknown: Result<File, _> = toml::from_str("[rate_limit]\nnope = 1\n");
    assert!(unknown.is_err());
}

#[tokio::test(start_paused = true)]
async fn the_documented_refusal_is_what_is_sent() {
    let app = app(RateLimitLayer::builder()
        .policy("per_minute", PolicyConfig::per_minute(60).burst(10))
        .policy("per_hour", PolicyConfig::per_hour(1000))
        .build()
        .unwrap());
    for _ in 0..10 {
        assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    }
    let refused = send(&app, "/").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "cache-control"), "no-store");
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        r#""per_minute";q=60;w=60, "per_hour";q=1000;w=3600"#
    );
    assert_eq!(
        header(&refused, "ratelimit"),
        r#""per_minute";r=0;t=10, "per_hour";r=990;t=36"#
    );
    // Compared as JSON: member order follows serde_json's map (sorted unless `preserve_order`).
    assert_eq!(
        body_json(refused).await,
        serde_json::from_str::<serde_json::Value>(r#"{"type":"urn:palisade:problem:quota_exceeded","title":"Too Many Requests","status":429,"detail":"Rate limit \"per_minute\" exceeded. Retry after the delay in Retry-After.","reason":"quota_exceeded","policy":"per_minute","violated-policies":["per_minute"]}"#).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_one_security_event() {
    let captured = palisade_testkit::LogCapture::default();
    let _default = captured.install(tracing::Level::INFO);
    let app = app(one_policy(PolicyConfig::per_second(1).burst(1)));
    assert_eq!(send(&app, "/").await.status(), StatusCode::OK);
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let out = captured.text();
    assert_eq!(
        out.lines().count(),
        1,
        "the admitted request logs nothing: {out}"
    );
    assert!(out.contains("INFO palisade::security"), "{out}");
    assert!(out.contains("event=\"rate_limited\""), "{out}");
    assert!(out.contains("policy=\"p\""), "{out}");
    assert!(out.contains("retry_after_ms=1000"), "{out}");
}
