//! OWASP-grade security response headers for axum/hyper servers, as a Tower layer that does not
//! break the app: the handler's own headers win by default, sub-routers can carry their own
//! policy, every value is validated when the layer is built (an error, never a panic), and the
//! per-response work is inserting precomputed values.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use palisade_security_headers::SecurityHeadersLayer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let api = Router::new()
//!     .route("/items", get(|| async { "[]" }))
//!     .layer(SecurityHeadersLayer::api()); // this sub-router's own, stricter policy
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .nest("/api", api)
//!     // Everything else, 404s included: the default policy (`SecurityHeadersLayer::new()`).
//!     .layer(SecurityHeadersLayer::builder().build().expect("a valid policy"));
//!
//! let page = app.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(page.headers()["x-content-type-options"], "nosniff");
//! assert_eq!(page.headers()["strict-transport-security"], "max-age=63072000; includeSubDomains");
//! assert!(page.headers().get("cache-control").is_none());
//!
//! let items = app.oneshot(Request::get("/api/items").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(items.headers()["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
//! assert_eq!(items.headers()["cache-control"], "no-store, max-age=0");
//! # }
//! ```
//!
//! Custom policies come from [`SecurityHeadersLayer::builder`], [`SecurityHeadersConfig::into_builder`] (any
//! preset) or a [`SecurityHeadersConfig`] read from a file (feature `serde`), and are validated by
//! [`SecurityHeadersBuilder::build`] / [`SecurityHeadersLayer::from_config`], which return a
//! [`ConfigError`](palisade_core::ConfigError) naming the bad key.
//!
//! # The default policy
//!
//! [`SecurityHeadersLayer::new`] ([`SecurityHeadersConfig::default`]) follows the OWASP Secure Headers Project
//! where that does not break ordinary apps:
//!
//! | header | default | why | OWASP / Helmet 8 |
//! |---|---|---|---|
//! | `Strict-Transport-Security` | `max-age=63072000; includeSubDomains`, every response | HTTPS only for two years, subdomains included; browsers ignore it over plain HTTP (RFC 6797 §8.1), so it is safe everywhere; HTTPS-only sending is opt-in | OWASP same; Helmet one year |
//! | `Content-Security-Policy` | `default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'` | same-origin resources only, no plugins, no `<base>`/form hijacking, no framing | OWASP's without `upgrade-insecure-requests` (breaks plain-HTTP dev and intranet hosts; Safari upgrades `http://localhost`) and the deprecated `block-all-mixed-content`; Helmet allows inline styles, `data:` images and framing by `'self'` (our [`web_app`](SecurityHeadersConfig::web_app)) |
//! | `X-Content-Type-Options` | `nosniff` | no MIME sniffing: an upload is never run as a script | same |
//! | `X-Frame-Options` | `DENY` | clickjacking, for browsers older than `frame-ancestors` | OWASP same; Helmet `SAMEORIGIN` |
//! | `Referrer-Policy` | `same-origin` | no URL leaves the origin; same-origin requests keep `Referer` and a real `Origin` | both `no-referrer`, which makes same-origin form POSTs send `Origin: null` and breaks Origin-checking CSRF defences |
//! | `Permissions-Policy` | `accelerometer=(), browsing-topics=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), hid=(), magnetometer=(), microphone=(), midi=(), payment=(), serial=(), usb=(), xr-spatial-tracking=()` | device, sensor, payment and ad-topic APIs off | OWASP also disables `fullscreen`, `publickey-credentials-get` (passkeys), clipboard and `sync-xhr`, which ordinary apps use; Helmet sends none |
//! | `Cross-Origin-Opener-Policy` | `same-origin` | cross-origin windows get no handle on this one (XS-Leaks, Spectre) | same |
//! | `Cross-Origin-Resource-Policy` | `same-site` | other sites cannot load responses as `<img>`/`<script>` | both `same-origin`, which blocks sibling subdomains and ports (helmet#343, #406) |
//! | `Cross-Origin-Embedder-Policy` | off (`require-corp` when on) | breaks every page with third-party images, scripts or frames lacking CORP/CORS; needed only for cross-origin isolation | OWASP `require-corp`; Helmet off since v7 (helmet#411) |
//! | `X-DNS-Prefetch-Control` | `off` | link targets are not leaked to DNS ahead of clicks | same |
//! | `X-Permitted-Cross-Domain-Policies` | `none` | Adobe clients may not load cross-domain policy files | same |
//! | `Origin-Agent-Cluster` | `?1` | origin-keyed process isolation; disables `document.domain` | Helmet same; OWASP silent |
//! | `Cache-Control` | off (`no-store, max-age=0` when on) | pages and assets should stay cacheable; APIs use [`api`](SecurityHeadersConfig::api) | OWASP `no-store, max-age=0` |
//! | removed | `Server`, `X-Powered-By` | they name the software stack | OWASP removes a longer list ([`strict`](SecurityHeadersConfig::strict)); Helmet removes `X-Powered-By` |
//!
//! Not sent, on purpose: `X-XSS-Protection` (its filter is gone from browsers and was itself an
//! attack surface), `Expect-CT` (retired), `X-Download-Options` (Internet Explorer 8),
//! `Clear-Site-Data` (belongs on a logout response only).
//!
//! # Presets
//!
//! | | [`default`](SecurityHeadersConfig::default) | [`api`](SecurityHeadersConfig::api) | [`web_app`](SecurityHeadersConfig::web_app) | [`strict`](SecurityHeadersConfig::strict) |
//! |---|---|---|---|---|
//! | CSP | see above | `default-src 'none'; frame-ancestors 'none'` | Helmet 8's without `upgrade-insecure-requests` ([`presets::CSP_WEB_APP`]) | OWASP's ([`presets::CSP_STRICT`]) |
//! | `X-Frame-Options` | `DENY` | `DENY` | `SAMEORIGIN` | `DENY` |
//! | `Referrer-Policy` | `same-origin` | `no-referrer` | `same-origin` | `no-referrer` |
//! | `Permissions-Policy` | see above | see above | see above | OWASP's ([`presets::PERMISSIONS_STRICT`]) |
//! | COOP | `same-origin` | `same-origin` | `same-origin-allow-popups` | `same-origin` |
//! | CORP | `same-site` | `same-origin` | `same-site` | `same-origin` |
//! | COEP | off | off | off | `require-corp` |
//! | `Cache-Control` | off | `no-store, max-age=0` | off | `no-store, max-age=0` |
//! | removed | `Server`, `X-Powered-By` | same | same | [`presets::REMOVE_STRICT`] |
//!
//! All other headers are as in the default table in every preset.
//!
//! # Insert modes and per-route policies
//!
//! Each header has an [`Insert`] mode: [`IfAbsent`](Insert::IfAbsent) (the default: the handler's
//! own value survives), [`Override`](Insert::Override) (always replace it) or
//! [`LeaveAlone`](Insert::LeaveAlone) (switched off: neither set nor replaced).
//!
//! A different policy for part of the app is a second layer on that sub-router (see the
//! example). The inner layer runs first on the response; the outer one then only adds what is
//! still missing, so the sub-router's values win for every header it sets, and it inherits the
//! outer policy's other headers. An outer header in [`Override`](Insert::Override) mode replaces
//! the inner value, and an inner [`LeaveAlone`](Insert::LeaveAlone) does not stop the outer layer
//! from setting that header: to keep a header off one sub-router, leave it alone in the outer
//! policy and set it in the other sub-routers' policies.
//!
//! # HSTS over HTTPS only
//!
//! By default HSTS goes on every response (browsers ignore it on plain HTTP). With
//! [`Hsts::only_over_https`] it is sent only when the request URI carries the `https` scheme
//! (HTTP/2; HTTP/1.1 over direct TLS leaves no trace in the request) or, with
//! [`Hsts::trust_x_forwarded_proto`], when the last element of the last `X-Forwarded-Proto`
//! line is `https`. That element is the one the nearest proxy set or appended; earlier ones may
//! come from the client. Trust it only behind a TLS terminator that always sets it.
//!
//! # Observe-only mode
//!
//! With [`EnforcementMode::ObserveOnly`](palisade_core::EnforcementMode::ObserveOnly) the layer
//! changes nothing a browser would enforce: it sends only the report-only form of the headers
//! that have one (`Content-Security-Policy-Report-Only`,
//! `Cross-Origin-Opener-Policy-Report-Only`, and `Cross-Origin-Embedder-Policy-Report-Only` if
//! COEP is on), sends none of the others (HSTS especially: browsers cache it for `max-age`), and
//! removes nothing. Browsers then report what the policy would have blocked: add a `report-to`
//! or `report-uri` directive to the CSP to collect the reports. Switch to enforce once they are
//! clean.
//!
//! # Cost and telemetry
//!
//! All names and values are validated and encoded when the layer is built. Per response the
//! layer removes the configured names, reserves room once, and inserts precomputed
//! [`HeaderValue`](http::HeaderValue)s: no header map is cloned, no text is formatted, and
//! values given as `&'static str` (every preset's) are cloned without touching a reference
//! count. The request's headers are read only for HTTPS-only HSTS with a trusted proxy. The
//! response body type is the inner service's, unchanged (no boxing). `benches/headers.rs`
//! compares the cost with axum-helmet and tower-helmet.
//!
//! The layer emits no metrics and no logs: it takes no decision worth counting, and the result
//! is visible on every response.

mod config;
mod future;
mod layer;
mod policy;
pub mod presets;
mod service;
#[cfg(test)]
mod tests;
mod values;

pub use config::{
    HeaderSetting, Insert, SecurityHeader, SecurityHeadersBuilder, SecurityHeadersConfig,
};
pub use future::ResponseFuture;
pub use layer::SecurityHeadersLayer;
pub use service::SecurityHeaders;
pub use values::{
    CacheControl, ContentSecurityPolicy, CrossOriginEmbedderPolicy, CrossOriginOpenerPolicy,
    CrossOriginResourcePolicy, DnsPrefetchControl, FrameOptions, Hsts, PermissionsPolicy,
    PermittedCrossDomainPolicies, ReferrerPolicy,
};
