//! Cost per request of the full default header set, against axum-helmet and tower-helmet
//! configured to send the same eleven headers, in the same run.
//!
//! `cargo bench -p palisade-security-headers --bench headers -- --warm-up-time 1 --measurement-time 3`
//!
//! Each iteration builds a request, calls the layered service, polls the future once (every
//! handler here is ready at once) and drops the response, so the numbers include the handler's
//! own response (one `content-type` header). `baseline` is the handler without any layer:
//! subtract it to get a layer's added cost. `palisade` also removes `Server` and `X-Powered-By`
//! (two lookups the peers do not make); `palisade_no_removal` is the like-for-like variant.
//! Two shapes:
//!
//! - `call`: one service, called again and again (a hyper connection serving requests);
//! - `clone_call`: the service is cloned per request first, as axum's `Router` does for the
//!   route's service stack on every request.

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Request, Response, header};
use palisade_security_headers::{Hsts, SecurityHeadersLayer, presets};
use tower::{Layer, Service, service_fn};

/// The headers every variant sends (palisade's default set; the peers are configured to match).
const EXPECTED: [&str; 11] = [
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "x-dns-prefetch-control",
    "x-permitted-cross-domain-policies",
    "origin-agent-cluster",
];

type Handler = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<&'static str>, Infallible>>,
>;

fn handler() -> Handler {
    fn respond(
        _request: Request<()>,
    ) -> std::future::Ready<Result<Response<&'static str>, Infallible>> {
        let mut response = Response::new("hello");
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        std::future::ready(Ok(response))
    }
    service_fn(respond as fn(_) -> _)
}

/// Calls `service` once and returns the response; every service here is ready at once.
fn drive<S>(service: &mut S, request: Request<()>) -> Response<&'static str>
where
    S: Service<Request<()>, Response = Response<&'static str>, Error = Infallible>,
{
    let future = pin!(service.call(request));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => unreachable!("the handler is ready at once"),
    }
}

fn axum_helmet_layer() -> axum_helmet::HelmetLayer {
    use axum_helmet::{
        ContentSecurityPolicy, CrossOriginOpenerPolicy, CrossOriginResourcePolicy, Helmet,
        OriginAgentCluster, ReferrerPolicy, StrictTransportSecurity, XContentTypeOptions,
        XDNSPrefetchControl, XFrameOptions, XPermittedCrossDomainPolicies,
    };
    Helmet::new()
        .add(
            StrictTransportSecurity::new()
                .max_age(63_072_000)
                .include_sub_domains(),
        )
        .add(
            ContentSecurityPolicy::new()
                .default_src(vec!["'self'"])
                .base_uri(vec!["'self'"])
                .form_action(vec!["'self'"])
                .frame_ancestors(vec!["'none'"])
                .object_src(vec!["'none'"]),
        )
        .add(XContentTypeOptions::nosniff())
        .add(XFrameOptions::deny())
        .add(ReferrerPolicy::same_origin())
        .add((
            "Permissions-Policy",
            presets::PERMISSIONS_DEFAULT.to_owned(),
        ))
        .add(CrossOriginOpenerPolicy::same_origin())
        .add(CrossOriginResourcePolicy::same_site())
        .add(XDNSPrefetchControl::off())
        .add(XPermittedCrossDomainPolicies::none())
        .add(OriginAgentCluster::new(true))
        .try_into()
        .expect("valid axum-helmet configuration")
}

/// tower-helmet has no Permissions-Policy; its public `IntoHeader` trait adds one.
struct PermissionsPolicy;

impl tower_helmet::IntoHeader for PermissionsPolicy {
    fn header_name(&self) -> HeaderName {
        HeaderName::from_static("permissions-policy")
    }
    fn header_value(&self) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        HeaderValue::from_str(presets::PERMISSIONS_DEFAULT)
    }
}

fn tower_helmet_layer() -> tower_helmet::HelmetLayer {
    use tower_helmet::header::{
        ContentSecurityPolicy, CrossOriginOpenerPolicy, CrossOriginResourcePolicy,
        OriginAgentCluster, ReferrerPolicy, ReferrerPolicyValue, StrictTransportSecurity,
        XContentTypeOptions, XDnsPrefetchControl, XFrameOptions, XPermittedCrossDomainPolicies,
    };
    let directives = [
        ("default-src", vec!["'self'"]),
        ("base-uri", vec!["'self'"]),
        ("form-action", vec!["'self'"]),
        ("frame-ancestors", vec!["'none'"]),
        ("object-src", vec!["'none'"]),
    ]
    .into_iter()
    .collect();
    let mut layer = tower_helmet::HelmetLayer::blank();
    layer
        .enable(StrictTransportSecurity {
            max_age: std::time::Duration::from_secs(63_072_000),
            include_subdomains: true,
            preload: false,
        })
        .enable(ContentSecurityPolicy {
            use_defaults: false,
            directives,
            report_only: false,
        })
        .enable(XContentTypeOptions)
        .enable(XFrameOptions::Deny)
        .enable(ReferrerPolicy(vec![ReferrerPolicyValue::SameOrigin]))
        .enable(PermissionsPolicy)
        .enable(CrossOriginOpenerPolicy::SameOrigin)
        .enable(CrossOriginResourcePolicy::SameSite)
        .enable(XDnsPrefetchControl(false))
        .enable(XPermittedCrossDomainPolicies::None)
        .enable(OriginAgentCluster);
    layer
}

/// Checks, once, that a variant really sends the whole set, so the comparison is fair.
fn check<S>(name: &str, service: &mut S, request: Request<()>)
where
    S: Service<Request<()>, Response = Response<&'static str>, Error = Infallible>,
{
    let response = drive(service, request);
    for header in EXPECTED {
        assert!(
            response.headers().contains_key(header),
            "{name} does not send {header}"
        );
    }
}

fn xfp_request() -> Request<()> {
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    request
}

fn bench(c: &mut Criterion) {
    let palisade = SecurityHeadersLayer::new().layer(handler());
    let palisade_https = SecurityHeadersLayer::builder()
        .strict_transport_security(Hsts {
            only_over_https: true,
            trust_x_forwarded_proto: true,
            ..Hsts::default()
        })
        .build()
        .expect("valid policy")
        .layer(handler());
    // Like for like: the peers remove nothing.
    let palisade_no_removal = SecurityHeadersLayer::builder()
        .keep_header("server")
        .keep_header("x-powered-by")
        .build()
        .expect("valid policy")
        .layer(handler());
    let axum_helmet = axum_helmet_layer().layer(handler());
    let tower_helmet = tower_helmet_layer().layer(handler());

    check("palisade", &mut palisade.clone(), Request::new(()));
    check(
        "palisade https-only",
        &mut palisade_https.clone(),
        xfp_request(),
    );
    check("axum-helmet", &mut axum_helmet.clone(), Request::new(()));
    check("tower-helmet", &mut tower_helmet.clone(), Request::new(()));

    let mut group = c.benchmark_group("call");
    {
        let mut service = handler();
        group.bench_function("baseline", |b| {
            b.iter(|| black_box(drive(&mut service, Request::new(()))));
        });
    }
    {
        let mut service = palisade.clone();
        group.bench_function("palisade", |b| {
            b.iter(|| black_box(drive(&mut service, Request::new(()))));
        });
    }
    {
        let mut service = palisade_no_removal.clone();
        group.bench_function("palisade_no_removal", |b| {
            b.iter(|| black_box(drive(&mut service, Request::new(()))));
        });
    }
    {
        let mut service = axum_helmet.clone();
        group.bench_function("axum-helmet", |b| {
            b.iter(|| black_box(drive(&mut service, Request::new(()))));
        });
    }
    {
        let mut service = tower_helmet.clone();
        group.bench_function("tower-helmet", |b| {
            b.iter(|| black_box(drive(&mut service, Request::new(()))));
        });
    }
    {
        let mut service = handler();
        group.bench_function("baseline_xfp_request", |b| {
            b.iter(|| black_box(drive(&mut service, xfp_request())));
        });
    }
    {
        let mut service = palisade_https.clone();
        group.bench_function("palisade_hsts_https_only_trusted_xfp", |b| {
            b.iter(|| black_box(drive(&mut service, xfp_request())));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("clone_call");
    {
        let service = handler();
        group.bench_function("baseline", |b| {
            b.iter(|| black_box(drive(&mut service.clone(), Request::new(()))));
        });
    }
    group.bench_function("palisade", |b| {
        b.iter(|| black_box(drive(&mut palisade.clone(), Request::new(()))));
    });
    group.bench_function("axum-helmet", |b| {
        b.iter(|| black_box(drive(&mut axum_helmet.clone(), Request::new(()))));
    });
    group.bench_function("tower-helmet", |b| {
        b.iter(|| black_box(drive(&mut tower_helmet.clone(), Request::new(()))));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
