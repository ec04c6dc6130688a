//! Behaviour of the layer on single responses: every header's default and override, insert
//! modes, removal, presets, invalid configuration, HSTS over HTTP and HTTPS, observe-only.

use std::convert::Infallible;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use palisade_core::EnforcementMode;
use proptest::prelude::*;
use tower::{ServiceExt, service_fn};

use crate::{
    ContentSecurityPolicy, CrossOriginEmbedderPolicy, CrossOriginOpenerPolicy,
    CrossOriginResourcePolicy, DnsPrefetchControl, FrameOptions, Hsts, Insert,
    PermittedCrossDomainPolicies, ReferrerPolicy, SecurityHeader, SecurityHeadersConfig,
    SecurityHeadersLayer,
    policy::{Policy, forwarded_proto_is_https},
    presets,
};

/// The headers of the response to `request`, from a handler that sets `handler_headers`.
async fn respond_to(
    layer: &SecurityHeadersLayer,
    request: Request<()>,
    handler_headers: &[(&str, &str)],
) -> HeaderMap {
    let handler_headers: Vec<(HeaderName, HeaderValue)> = handler_headers
        .iter()
        .map(|(n, v)| {
            (
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect();
    let handler = service_fn(move |_request: Request<()>| {
        let mut response = Response::new("body");
        for (name, value) in &handler_headers {
            response.headers_mut().append(name, value.clone());
        }
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let response = tower::Layer::layer(layer, handler)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(
        *response.body(),
        "body",
        "the body passes through unchanged"
    );
    response.headers().clone()
}

async fn respond(layer: &SecurityHeadersLayer, handler_headers: &[(&str, &str)]) -> HeaderMap {
    respond_to(layer, Request::new(()), handler_headers).await
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// `(header, value)` of the default policy, in insertion order.
const DEFAULTS: &[(&str, &str)] = &[
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

#[tokio::test]
async fn default_policy_sets_every_default_header_and_nothing_else() {
    let headers = respond(&SecurityHeadersLayer::new(), &[]).await;
    for (name, value) in DEFAULTS {
        assert_eq!(get(&headers, name), Some(*value), "{name}");
    }
    assert_eq!(headers.len(), DEFAULTS.len(), "{headers:?}");
    assert!(headers.get("cross-origin-embedder-policy").is_none());
    assert!(headers.get("cache-control").is_none());
    assert!(headers.get("content-security-policy-report-only").is_none());
    assert_eq!(
        SecurityHeadersLayer::default().config(),
        &SecurityHeadersConfig::default()
    );
}

#[tokio::test]
async fn handler_values_survive_by_default_for_every_header() {
    // `strict` switches all thirteen headers on.
    let layer = SecurityHeadersLayer::strict();
    for header in SecurityHeader::ALL {
        assert_eq!(layer.config().insert_mode(header), Insert::IfAbsent);
        let headers = respond(&layer, &[(header.name(), "from-handler")]).await;
        let values: Vec<_> = headers.get_all(header.name()).iter().collect();
        assert_eq!(values, ["from-handler"], "{header:?}");
    }
}

/// The value `strict` sends for `header`.
fn strict_value(header: SecurityHeader) -> &'static str {
    match header {
        SecurityHeader::StrictTransportSecurity => "max-age=63072000; includeSubDomains",
        SecurityHeader::ContentSecurityPolicy => presets::CSP_STRICT,
        SecurityHeader::XContentTypeOptions => "nosniff",
        SecurityHeader::XFrameOptions => "DENY",
        SecurityHeader::ReferrerPolicy => "no-referrer",
        SecurityHeader::PermissionsPolicy => presets::PERMISSIONS_STRICT,
        SecurityHeader::CrossOriginOpenerPolicy | SecurityHeader::CrossOriginResourcePolicy => {
            "same-origin"
        }
        SecurityHeader::CrossOriginEmbedderPolicy => "require-corp",
        SecurityHeader::XDnsPrefetchControl => "off",
        SecurityHeader::XPermittedCrossDomainPolicies => "none",
        SecurityHeader::OriginAgentCluster => "?1",
        SecurityHeader::CacheControl => "no-store, max-age=0",
    }
}

#[tokio::test]
async fn override_mode_replaces_every_handler_value() {
    for header in SecurityHeader::ALL {
        let layer = SecurityHeadersConfig::strict()
            .into_builder()
            .insert_mode(header, Insert::Override)
            .build()
            .unwrap();
        let headers = respond(&layer, &[(header.name(), "one"), (header.name(), "two")]).await;
        let values: Vec<_> = headers.get_all(header.name()).iter().collect();
        assert_eq!(values, [strict_value(header)], "{header:?}");
        // The other headers keep the handler-wins default.
        let others = respond(&layer, &[("x-frame-options", "SAMEORIGIN")]).await;
        if header != SecurityHeader::XFrameOptions {
            assert_eq!(get(&others, "x-frame-options"), Some("SAMEORIGIN"));
        }
    }
}

#[tokio::test]
async fn leave_alone_neither_sets_nor_touches() {
    for header in SecurityHeader::ALL {
        let layer = SecurityHeadersConfig::strict()
            .into_builder()
            .leave_alone(header)
            .build()
            .unwrap();
        assert!(!layer.config().is_on(header));
        let headers = respond(&layer, &[]).await;
        assert!(headers.get(header.name()).is_none(), "{header:?}");
        assert_eq!(
            headers.len(),
            SecurityHeader::ALL.len() - 1,
            "only {header:?} is missing"
        );
        let headers = respond(&layer, &[(header.name(), "mine")]).await;
        assert_eq!(get(&headers, header.name()), Some("mine"), "{header:?}");
    }
}

async fn sent(layer: SecurityHeadersLayer, name: &str) -> String {
    get(&respond(&layer, &[]).await, name).unwrap().to_owned()
}

#[tokio::test]
async fn every_enum_value_is_sent_as_configured() {
    let b = SecurityHeadersLayer::builder;

    for (value, text) in [
        (FrameOptions::Deny, "DENY"),
        (FrameOptions::SameOrigin, "SAMEORIGIN"),
    ] {
        let layer = b().x_frame_options(value).build().unwrap();
        assert_eq!(sent(layer, "x-frame-options").await, text);
    }
    for (value, text) in [
        (ReferrerPolicy::NoReferrer, "no-referrer"),
        (
            ReferrerPolicy::NoReferrerWhenDowngrade,
            "no-referrer-when-downgrade",
        ),
        (ReferrerPolicy::Origin, "origin"),
        (
            ReferrerPolicy::OriginWhenCrossOrigin,
            "origin-when-cross-origin",
        ),
        (ReferrerPolicy::SameOrigin, "same-origin"),
        (ReferrerPolicy::StrictOrigin, "strict-origin"),
        (
            ReferrerPolicy::StrictOriginWhenCrossOrigin,
            "strict-origin-when-cross-origin",
        ),
        (ReferrerPolicy::UnsafeUrl, "unsafe-url"),
    ] {
        let layer = b().referrer_policy(value).build().unwrap();
        assert_eq!(sent(layer, "referrer-policy").await, text);
    }
    for (value, text) in [
        (CrossOriginOpenerPolicy::SameOrigin, "same-origin"),
        (
            CrossOriginOpenerPolicy::SameOriginAllowPopups,
            "same-origin-allow-popups",
        ),
        (
            CrossOriginOpenerPolicy::NoopenerAllowPopups,
            "noopener-allow-popups",
        ),
        (CrossOriginOpenerPolicy::UnsafeNone, "unsafe-none"),
    ] {
        let layer = b().cross_origin_opener_policy(value).build().unwrap();
        assert_eq!(sent(layer, "cross-origin-opener-policy").await, text);
    }
    for (value, text) in [
        (CrossOriginResourcePolicy::SameOrigin, "same-origin"),
        (CrossOriginResourcePolicy::SameSite, "same-site"),
        (CrossOriginResourcePolicy::CrossOrigin, "cross-origin"),
    ] {
        let layer = b().cross_origin_resource_policy(value).build().unwrap();
        assert_eq!(sent(layer, "cross-origin-resource-policy").await, text);
    }
    for (value, text) in [
        (CrossOriginEmbedderPolicy::RequireCorp, "require-corp"),
        (CrossOriginEmbedderPolicy::Credentialless, "credentialless"),
        (CrossOriginEmbedderPolicy::UnsafeNone, "unsafe-none"),
    ] {
        // Setting a value switches the opt-in header on.
        let layer = b().cross_origin_embedder_policy(value).build().unwrap();
        assert_eq!(sent(layer, "cross-origin-embedder-policy").await, text);
    }
    for (value, text) in [
        (DnsPrefetchControl::Off, "off"),
        (DnsPrefetchControl::On, "on"),
    ] {
        let layer = b().x_dns_prefetch_control(value).build().unwrap();
        assert_eq!(sent(layer, "x-dns-prefetch-control").await, text);
    }
    for (value, text) in [
        (PermittedCrossDomainPolicies::None, "none"),
        (PermittedCrossDomainPolicies::MasterOnly, "master-only"),
        (
            PermittedCrossDomainPolicies::ByContentType,
            "by-content-type",
        ),
        (PermittedCrossDomainPolicies::All, "all"),
    ] {
        let layer = b()
            .x_permitted_cross_domain_policies(value)
            .build()
            .unwrap();
        assert_eq!(sent(layer, "x-permitted-cross-domain-policies").await, text);
    }
}

#[tokio::test]
async fn every_text_value_is_sent_as_configured() {
    let b = SecurityHeadersLayer::builder;
    let hsts = Hsts {
        max_age: 31_536_000,
        preload: true,
        ..Hsts::default()
    };
    let layer = b().strict_transport_security(hsts).build().unwrap();
    assert_eq!(
        sent(layer, "strict-transport-security").await,
        "max-age=31536000; includeSubDomains; preload"
    );
    let layer = b()
        .strict_transport_security(Hsts {
            include_subdomains: false,
            ..Hsts::default().max_age(std::time::Duration::from_secs(600))
        })
        .build()
        .unwrap();
    assert_eq!(
        sent(layer, "strict-transport-security").await,
        "max-age=600"
    );

    // Owned (run-time) text works as well as static text.
    let policy = format!("default-src 'self' https://{}", "cdn.example.com");
    let layer = b().content_security_policy(policy.clone()).build().unwrap();
    assert_eq!(sent(layer, "content-security-policy").await, policy);
    let layer = b().permissions_policy("camera=(self)").build().unwrap();
    assert_eq!(sent(layer, "permissions-policy").await, "camera=(self)");
    let layer = b()
        .cache_control(String::from("private, max-age=60"))
        .build()
        .unwrap();
    assert_eq!(sent(layer, "cache-control").await, "private, max-age=60");
}

#[tokio::test]
async fn setting_a_value_keeps_override_mode() {
    let layer = SecurityHeadersLayer::builder()
        .insert_mode(SecurityHeader::XFrameOptions, Insert::Override)
        .x_frame_options(FrameOptions::SameOrigin)
        .build()
        .unwrap();
    let headers = respond(&layer, &[("x-frame-options", "DENY")]).await;
    assert_eq!(get(&headers, "x-frame-options"), Some("SAMEORIGIN"));
}

#[tokio::test]
async fn csp_report_only_in_enforce_mode() {
    let layer = SecurityHeadersLayer::builder()
        .csp_report_only(true)
        .build()
        .unwrap();
    let headers = respond(&layer, &[]).await;
    assert!(headers.get("content-security-policy").is_none());
    assert_eq!(
        get(&headers, "content-security-policy-report-only"),
        Some(presets::CSP_DEFAULT)
    );
    // Removing the enforced name is then allowed; removing the report-only one is not.
    assert!(
        SecurityHeadersConfig::default()
            .into_builder()
            .csp_report_only(true)
            .remove_header("content-security-policy")
            .build()
            .is_ok()
    );
    let err = SecurityHeadersConfig::default()
        .into_builder()
        .csp_report_only(true)
        .remove_header("content-security-policy-report-only")
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "security_headers.remove");
}

#[tokio::test]
async fn leaking_headers_are_removed() {
    let leaks = [
        ("server", "nginx/1.25.3"),
        ("x-powered-by", "PHP/8.3"),
        ("x-powered-by", "Express"),
        ("x-envoy-upstream-service-time", "12"),
        ("x-request-id", "abc"),
    ];
    let headers = respond(&SecurityHeadersLayer::new(), &leaks).await;
    assert!(headers.get("server").is_none());
    assert!(headers.get("x-powered-by").is_none(), "every value goes");
    assert_eq!(get(&headers, "x-envoy-upstream-service-time"), Some("12"));
    assert_eq!(get(&headers, "x-request-id"), Some("abc"));

    let layer = SecurityHeadersLayer::builder()
        .remove_header("X-Envoy-Upstream-Service-Time")
        .remove_header(" x-envoy-upstream-service-time ")
        .keep_header("SERVER")
        .build()
        .unwrap();
    let headers = respond(&layer, &leaks).await;
    assert!(headers.get("x-envoy-upstream-service-time").is_none());
    assert!(headers.get("x-powered-by").is_none());
    assert_eq!(get(&headers, "server"), Some("nginx/1.25.3"));
    assert_eq!(get(&headers, "x-request-id"), Some("abc"));

    let strict = respond(
        &SecurityHeadersLayer::strict(),
        &[("x-aspnet-version", "4.0.30319"), ("x-runtime", "0.01")],
    )
    .await;
    assert!(strict.get("x-aspnet-version").is_none());
    assert!(strict.get("x-runtime").is_none());
}

#[tokio::test]
async fn presets_send_what_their_docs_say() {
    let api = respond(&SecurityHeadersLayer::api(), &[]).await;
    assert_eq!(
        get(&api, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(get(&api, "cache-control"), Some("no-store, max-age=0"));
    assert_eq!(get(&api, "referrer-policy"), Some("no-referrer"));
    assert_eq!(
        get(&api, "cross-origin-resource-policy"),
        Some("same-origin")
    );
    assert_eq!(get(&api, "x-frame-options"), Some("DENY"));
    assert!(api.get("cross-origin-embedder-policy").is_none());
    // An API handler's own caching decision wins.
    let cached = respond(
        &SecurityHeadersLayer::api(),
        &[("cache-control", "public, max-age=60")],
    )
    .await;
    assert_eq!(get(&cached, "cache-control"), Some("public, max-age=60"));

    let web = respond(&SecurityHeadersLayer::web_app(), &[]).await;
    assert_eq!(
        get(&web, "content-security-policy"),
        Some(presets::CSP_WEB_APP)
    );
    assert_eq!(get(&web, "x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(
        get(&web, "cross-origin-opener-policy"),
        Some("same-origin-allow-popups")
    );
    assert_eq!(get(&web, "referrer-policy"), Some("same-origin"));
    assert!(web.get("cache-control").is_none());
    assert!(web.get("cross-origin-embedder-policy").is_none());

    let strict = respond(&SecurityHeadersLayer::strict(), &[]).await;
    for header in SecurityHeader::ALL {
        assert_eq!(
            get(&strict, header.name()),
            Some(strict_value(header)),
            "{header:?}"
        );
    }
    assert_eq!(strict.len(), SecurityHeader::ALL.len());

    for preset in [
        SecurityHeadersConfig::default(),
        SecurityHeadersConfig::api(),
        SecurityHeadersConfig::web_app(),
        SecurityHeadersConfig::strict(),
    ] {
        assert_eq!(preset.validate(), Ok(()));
    }
}

#[test]
fn invalid_configuration_is_an_error_naming_the_key() {
    let b = SecurityHeadersLayer::builder;
    let cases = [
        (
            b().content_security_policy("default-src self"),
            "security_headers.content_security_policy",
        ),
        (
            b().content_security_policy("default-src 'self'\r\nSet-Cookie: a=b"),
            "security_headers.content_security_policy",
        ),
        (
            b().content_security_policy(String::new()),
            "security_headers.content_security_policy",
        ),
        (
            b().permissions_policy("camera"),
            "security_headers.permissions_policy",
        ),
        (
            b().cache_control("no store"),
            "security_headers.cache_control",
        ),
        (b().remove_header("bad name"), "security_headers.remove"),
        (
            b().remove_header("x-frame-options"),
            "security_headers.remove",
        ),
        (
            b().remove_header("Content-Length"),
            "security_headers.remove",
        ),
        (
            b().remove_header("transfer-encoding"),
            "security_headers.remove",
        ),
        (
            b().strict_transport_security(Hsts {
                preload: true,
                include_subdomains: false,
                ..Hsts::default()
            }),
            "security_headers.strict_transport_security.preload",
        ),
        (
            b().strict_transport_security(Hsts {
                trust_x_forwarded_proto: true,
                ..Hsts::default()
            }),
            "security_headers.strict_transport_security.trust_x_forwarded_proto",
        ),
    ];
    for (builder, key) in cases {
        let config = builder.config().clone();
        let err = builder.build().unwrap_err();
        assert_eq!(err.key(), key, "{err}");
        assert_eq!(config.validate().unwrap_err(), err);
        assert!(SecurityHeadersLayer::from_config(config).is_err());
    }
    // A bad value in a header that is switched off is not checked, and removing a header the
    // policy leaves alone is fine.
    let off = SecurityHeadersConfig {
        content_security_policy: crate::HeaderSetting::off(ContentSecurityPolicy::new(
            "nonsense here",
        )),
        ..SecurityHeadersConfig::default()
    };
    assert_eq!(off.validate(), Ok(()));
    assert!(
        b().leave_alone(SecurityHeader::XFrameOptions)
            .remove_header("x-frame-options")
            .build()
            .is_ok()
    );
}

fn https_only(trust_x_forwarded_proto: bool) -> SecurityHeadersLayer {
    SecurityHeadersLayer::builder()
        .strict_transport_security(Hsts {
            only_over_https: true,
            trust_x_forwarded_proto,
            ..Hsts::default()
        })
        .build()
        .unwrap()
}

async fn sends_hsts(layer: &SecurityHeadersLayer, uri: &str, forwarded: &[&str]) -> bool {
    let mut request = Request::builder().uri(uri);
    for value in forwarded {
        request = request.header("x-forwarded-proto", *value);
    }
    let headers = respond_to(layer, request.body(()).unwrap(), &[]).await;
    headers.contains_key("strict-transport-security")
}

#[tokio::test]
async fn hsts_by_default_goes_on_every_response() {
    let layer = SecurityHeadersLayer::new();
    assert!(sends_hsts(&layer, "/", &[]).await);
    assert!(sends_hsts(&layer, "http://example.com/", &["http"]).await);
}

#[tokio::test]
async fn hsts_only_over_https_reads_the_scheme() {
    let layer = https_only(false);
    assert!(!sends_hsts(&layer, "/", &[]).await, "HTTP/1.1 origin-form");
    assert!(!sends_hsts(&layer, "http://example.com/", &[]).await);
    assert!(sends_hsts(&layer, "https://example.com/", &[]).await);
    // Untrusted: the client's claim changes nothing.
    assert!(!sends_hsts(&layer, "/", &["https"]).await);
    assert!(!sends_hsts(&layer, "http://example.com/", &["https"]).await);
    // The other headers do not depend on the transport.
    let headers = respond_to(&layer, Request::new(()), &[]).await;
    assert_eq!(headers.len(), DEFAULTS.len() - 1);
}

#[tokio::test]
async fn hsts_trusts_the_last_forwarded_proto_when_configured() {
    let layer = https_only(true);
    assert!(sends_hsts(&layer, "/", &["https"]).await);
    assert!(sends_hsts(&layer, "/", &["HTTPS"]).await);
    assert!(sends_hsts(&layer, "/", &[" https "]).await);
    assert!(sends_hsts(&layer, "/", &["http, https"]).await);
    assert!(sends_hsts(&layer, "/", &["http", "https"]).await);
    assert!(!sends_hsts(&layer, "/", &[]).await);
    assert!(!sends_hsts(&layer, "/", &["http"]).await);
    // A client-supplied `https` followed by the proxy's `http` is plain HTTP.
    assert!(!sends_hsts(&layer, "/", &["https, http"]).await);
    assert!(!sends_hsts(&layer, "/", &["https", "http"]).await);
    assert!(!sends_hsts(&layer, "/", &["https,"]).await);
    assert!(!sends_hsts(&layer, "/", &["httpsx"]).await);
    assert!(!sends_hsts(&layer, "/", &["wss"]).await);
    // The scheme still counts on its own.
    assert!(sends_hsts(&layer, "https://example.com/", &[]).await);
}

#[tokio::test]
async fn hsts_over_https_respects_the_handler_value() {
    let layer = https_only(true);
    let request = Request::builder()
        .uri("/")
        .header("x-forwarded-proto", "https")
        .body(())
        .unwrap();
    let headers = respond_to(
        &layer,
        request,
        &[("strict-transport-security", "max-age=0")],
    )
    .await;
    assert_eq!(
        get(&headers, "strict-transport-security"),
        Some("max-age=0")
    );
}

#[tokio::test]
async fn observe_only_sends_report_only_headers_and_removes_nothing() {
    let layer = SecurityHeadersLayer::builder()
        .observe_only()
        .cross_origin_embedder_policy(CrossOriginEmbedderPolicy::RequireCorp)
        .build()
        .unwrap();
    assert_eq!(layer.config().mode, EnforcementMode::ObserveOnly);
    let headers = respond(&layer, &[("server", "hyper"), ("x-powered-by", "rust")]).await;
    assert_eq!(
        get(&headers, "content-security-policy-report-only"),
        Some(presets::CSP_DEFAULT)
    );
    assert_eq!(
        get(&headers, "cross-origin-opener-policy-report-only"),
        Some("same-origin")
    );
    assert_eq!(
        get(&headers, "cross-origin-embedder-policy-report-only"),
        Some("require-corp")
    );
    assert_eq!(get(&headers, "server"), Some("hyper"));
    assert_eq!(get(&headers, "x-powered-by"), Some("rust"));
    assert_eq!(headers.len(), 5, "nothing enforcing is sent: {headers:?}");

    // Even HTTPS-only HSTS stays off, and the handler's own report-only policy wins.
    let layer = SecurityHeadersLayer::from_config(SecurityHeadersConfig {
        mode: EnforcementMode::ObserveOnly,
        ..https_only(true).config().clone()
    })
    .unwrap();
    let request = Request::builder()
        .uri("https://example.com/")
        .body(())
        .unwrap();
    let headers = respond_to(
        &layer,
        request,
        &[("content-security-policy-report-only", "default-src 'none'")],
    )
    .await;
    assert!(headers.get("strict-transport-security").is_none());
    assert_eq!(
        get(&headers, "content-security-policy-report-only"),
        Some("default-src 'none'")
    );
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let failing = service_fn(|_request: Request<()>| {
        std::future::ready(Err::<Response<()>, _>("inner failed"))
    });
    let result = tower::Layer::layer(&SecurityHeadersLayer::new(), failing)
        .oneshot(Request::new(()))
        .await;
    assert_eq!(result.unwrap_err(), "inner failed");
}

#[test]
fn forwarded_proto_reads_only_the_last_element() {
    let mut headers = HeaderMap::new();
    assert!(!forwarded_proto_is_https(&headers));
    headers.append("x-forwarded-proto", HeaderValue::from_static("https"));
    assert!(forwarded_proto_is_https(&headers));
    headers.append("x-forwarded-proto", HeaderValue::from_static("http"));
    assert!(!forwarded_proto_is_https(&headers));
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_bytes(b"http, \tHttps\t").unwrap(),
    );
    assert!(forwarded_proto_is_https(&headers));
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_bytes(b"https\xff").unwrap(),
    );
    assert!(!forwarded_proto_is_https(&headers));
}

/// The reference model: split on commas, take the last element, trim spaces and tabs.
fn model(lines: &[Vec<u8>]) -> bool {
    lines.last().is_some_and(|line| {
        let text = String::from_utf8_lossy(line);
        let last = text.split(',').next_back().unwrap_or("");
        last.trim_matches([' ', '\t']).eq_ignore_ascii_case("https")
    })
}

/// Header-value bytes (visible ASCII, obs-text, spaces, tabs), biased towards the interesting
/// tokens.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"https".to_vec()),
        Just(b"HTTPS".to_vec()),
        Just(b"http".to_vec()),
        Just(b",".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\t".to_vec()),
        proptest::collection::vec(
            prop_oneof![0x21_u8..0x7f, 0x80_u8..=0xff, Just(b' '), Just(b',')],
            0..8
        ),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

fn headers_of(lines: &[Vec<u8>]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(
            "x-forwarded-proto",
            HeaderValue::from_bytes(line).expect("strategy yields valid values"),
        );
    }
    headers
}

proptest! {
    #[test]
    fn forwarded_proto_matches_the_model(lines in proptest::collection::vec(line(), 0..4)) {
        prop_assert_eq!(forwarded_proto_is_https(&headers_of(&lines)), model(&lines));
    }

    /// Whatever a client sends, a trusted proxy that appends `http` (as a new element or a new
    /// line) makes the request plain HTTP.
    #[test]
    fn a_client_cannot_outvote_the_proxy(lines in proptest::collection::vec(line(), 0..4), new_line: bool) {
        let mut lines = lines;
        match lines.last_mut() {
            Some(last) if !new_line => last.extend_from_slice(b", http"),
            _ => lines.push(b"http".to_vec()),
        }
        prop_assert!(!forwarded_proto_is_https(&headers_of(&lines)));
    }
}

#[cfg(feature = "serde")]
mod serde_config {
    use super::*;

    #[test]
    fn config_reads_from_data_with_documented_defaults() {
        let config: SecurityHeadersConfig = serde_json::from_value(serde_json::json!({
            "mode": "observe_only",
            "remove": ["server", "x-envoy-upstream-service-time"],
            "strict_transport_security": {
                "value": { "max_age": 31_536_000, "only_over_https": true, "trust_x_forwarded_proto": true }
            },
            "content_security_policy": {
                "value": { "policy": "default-src 'self'" },
                "insert": "override"
            },
            "x_frame_options": { "value": "same-origin" },
            "referrer_policy": { "value": "strict-origin-when-cross-origin" },
            "cross_origin_embedder_policy": { "value": "credentialless" },
            "cache_control": { "value": "no-store" },
            "origin_agent_cluster": "leave_alone"
        }))
        .unwrap();
        assert_eq!(config.mode, EnforcementMode::ObserveOnly);
        assert_eq!(config.strict_transport_security.value.max_age, 31_536_000);
        assert!(config.strict_transport_security.value.include_subdomains);
        assert_eq!(config.content_security_policy.insert, Insert::Override);
        assert_eq!(config.x_frame_options.value, FrameOptions::SameOrigin);
        assert_eq!(
            config.referrer_policy.value,
            ReferrerPolicy::StrictOriginWhenCrossOrigin
        );
        // Naming a value with the default insert mode switches the opt-in headers on.
        assert!(config.is_on(SecurityHeader::CrossOriginEmbedderPolicy));
        assert!(config.is_on(SecurityHeader::CacheControl));
        assert!(!config.is_on(SecurityHeader::OriginAgentCluster));
        // Untouched headers keep their defaults.
        assert_eq!(
            config.permissions_policy,
            SecurityHeadersConfig::default().permissions_policy
        );
        assert_eq!(config.validate(), Ok(()));

        let empty: SecurityHeadersConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, SecurityHeadersConfig::default());
        let alias: SecurityHeadersConfig =
            serde_json::from_str(r#"{"x_frame_options": {"value": "sameorigin"}}"#).unwrap();
        assert_eq!(alias.x_frame_options.value, FrameOptions::SameOrigin);
    }

    #[test]
    fn unknown_or_bad_fields_are_errors() {
        assert!(
            serde_json::from_str::<SecurityHeadersConfig>(r#"{"x_xss_protection": "0"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<SecurityHeadersConfig>(
                r#"{"x_frame_options": {"value": "allow-from"}}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<SecurityHeadersConfig>(
                r#"{"x_frame_options": {"insert": "sometimes"}}"#
            )
            .is_err()
        );
        let bad: SecurityHeadersConfig = serde_json::from_str(
            r#"{"content_security_policy": {"value": {"policy": "script-src self"}}}"#,
        )
        .unwrap();
        assert_eq!(
            bad.validate().unwrap_err().key(),
            "security_headers.content_security_policy"
        );
    }
}

/// Handler header names for the model test: policy headers, leaking headers, and others.
const HANDLER_NAMES: &[&str] = &[
    "content-type",
    "content-length",
    "set-cookie",
    "x-frame-options",
    "content-security-policy",
    "cache-control",
    "strict-transport-security",
    "referrer-policy",
    "cross-origin-opener-policy",
    "permissions-policy",
    "x-content-type-options",
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-custom",
];

fn handler_headers() -> impl Strategy<Value = Vec<(usize, String)>> {
    proptest::collection::vec((0..HANDLER_NAMES.len(), "[a-z0-9=;, ]{0,12}"), 0..12)
}

fn policies() -> Vec<Policy> {
    let mut override_some = SecurityHeadersConfig::strict();
    override_some.x_frame_options.insert = Insert::Override;
    override_some.cache_control.insert = Insert::Override;
    let mut https_only = SecurityHeadersConfig::default();
    https_only.strict_transport_security.value = Hsts {
        only_over_https: true,
        ..Hsts::default()
    };
    let mut observe = SecurityHeadersConfig::api();
    observe.mode = EnforcementMode::ObserveOnly;
    [
        SecurityHeadersConfig::default(),
        SecurityHeadersConfig::api(),
        SecurityHeadersConfig::web_app(),
        SecurityHeadersConfig::strict(),
        override_some,
        https_only,
        observe,
    ]
    .into_iter()
    .map(|config| Policy::compile(config).expect("valid policy"))
    .collect()
}

proptest! {
    /// The template-based `apply` gives exactly the headers of removing, then inserting each
    /// policy header, for any handler headers (repeated names and multiple values included).
    #[test]
    fn apply_matches_removing_then_inserting(headers in handler_headers(), https: bool) {
        let mut handler = HeaderMap::new();
        for (name, value) in &headers {
            handler.append(
                HeaderName::from_static(HANDLER_NAMES[*name]),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        for policy in policies() {
            let (mut fast, mut model) = (handler.clone(), handler.clone());
            policy.apply(&mut fast, https);
            policy.apply_by_insertion(&mut model, https);
            prop_assert_eq!(fast, model);
        }
    }
}
