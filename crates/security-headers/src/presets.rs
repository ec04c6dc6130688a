//! The presets: [`SecurityHeadersConfig::default`], [`SecurityHeadersConfig::api`], [`SecurityHeadersConfig::web_app`], [`SecurityHeadersConfig::strict`].
//! Their values are `&'static str`, so the default layers insert every header without even a
//! reference count.

use std::borrow::Cow;

use palisade_core::EnforcementMode;

use crate::{
    config::{HeaderSetting, Insert, SecurityHeadersConfig},
    values::{
        CacheControl, ContentSecurityPolicy, CrossOriginEmbedderPolicy, CrossOriginOpenerPolicy,
        CrossOriginResourcePolicy, DnsPrefetchControl, FrameOptions, Hsts, PermissionsPolicy,
        PermittedCrossDomainPolicies, ReferrerPolicy,
    },
};

/// The default CSP: OWASP's without `upgrade-insecure-requests` and `block-all-mixed-content`.
pub const CSP_DEFAULT: &str = "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The CSP of [`SecurityHeadersConfig::api`]: a JSON answer loads nothing and is framed by no one.
pub const CSP_API: &str = "default-src 'none'; frame-ancestors 'none'";

/// The CSP of [`SecurityHeadersConfig::web_app`]: Helmet 8's default without `upgrade-insecure-requests`:
/// same-origin scripts only (no inline scripts, no inline event handlers), inline styles and
/// `https:` stylesheets and fonts allowed, `data:` images, framed by the same origin only.
pub const CSP_WEB_APP: &str = "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' https: 'unsafe-inline'";

/// The CSP of [`SecurityHeadersConfig::strict`]: OWASP Secure Headers Project's, verbatim.
pub const CSP_STRICT: &str = "default-src 'self'; form-action 'self'; base-uri 'self'; object-src 'none'; frame-ancestors 'none'; upgrade-insecure-requests";

/// The default Permissions-Policy: device, sensor, payment and ad-topic features off.
pub const PERMISSIONS_DEFAULT: &str = "accelerometer=(), browsing-topics=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), hid=(), magnetometer=(), microphone=(), midi=(), payment=(), serial=(), usb=(), xr-spatial-tracking=()";

/// The Permissions-Policy of [`SecurityHeadersConfig::strict`]: OWASP's list, with `browsing-topics` in place of
/// the retired `interest-cohort`.
pub const PERMISSIONS_STRICT: &str = "accelerometer=(), autoplay=(), camera=(), cross-origin-isolated=(), display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), keyboard-map=(), magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), sync-xhr=(self), usb=(), web-share=(), xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), gamepad=(), hid=(), idle-detection=(), browsing-topics=(), serial=(), unload=()";

/// OWASP's `Cache-Control` for responses that must not be stored.
pub const NO_STORE: &str = "no-store, max-age=0";

/// The default HSTS text, kept static so that it costs nothing per response.
pub(crate) const HSTS_DEFAULT: &str = "max-age=63072000; includeSubDomains";

/// Headers removed by default: they name the server software.
pub const REMOVE_DEFAULT: &[&str] = &["server", "x-powered-by"];

/// Headers removed by [`SecurityHeadersConfig::strict`]: the defaults plus the version and debug headers of
/// common frameworks and backends (from the OWASP Secure Headers Project's removal list).
pub const REMOVE_STRICT: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-generator",
    "x-runtime",
    "x-version",
    "x-backend-server",
    "x-debug-token",
    "x-debug-token-link",
];

fn names(list: &[&'static str]) -> Vec<Cow<'static, str>> {
    list.iter().map(|&n| Cow::Borrowed(n)).collect()
}

/// The documented default: OWASP Secure Headers Project recommendations where they do not break
/// ordinary apps. See the crate docs for the table of values and reasons.
impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self {
            mode: EnforcementMode::Enforce,
            strict_transport_security: HeaderSetting::if_absent(Hsts::default()),
            content_security_policy: HeaderSetting::if_absent(ContentSecurityPolicy::default()),
            x_content_type_options: Insert::IfAbsent,
            x_frame_options: HeaderSetting::if_absent(FrameOptions::Deny),
            referrer_policy: HeaderSetting::if_absent(ReferrerPolicy::SameOrigin),
            permissions_policy: HeaderSetting::if_absent(PermissionsPolicy::default()),
            cross_origin_opener_policy: HeaderSetting::if_absent(
                CrossOriginOpenerPolicy::SameOrigin,
            ),
            cross_origin_resource_policy: HeaderSetting::if_absent(
                CrossOriginResourcePolicy::SameSite,
            ),
            cross_origin_embedder_policy: HeaderSetting::off(
                CrossOriginEmbedderPolicy::RequireCorp,
            ),
            x_dns_prefetch_control: HeaderSetting::if_absent(DnsPrefetchControl::Off),
            x_permitted_cross_domain_policies: HeaderSetting::if_absent(
                PermittedCrossDomainPolicies::None,
            ),
            origin_agent_cluster: Insert::IfAbsent,
            cache_control: HeaderSetting::off(CacheControl::default()),
            remove: names(REMOVE_DEFAULT),
        }
    }
}

impl SecurityHeadersConfig {
    /// For JSON APIs: [`SecurityHeadersConfig::default`] plus
    ///
    /// - CSP `default-src 'none'; frame-ancestors 'none'`: a JSON answer opened in a browser
    ///   runs and loads nothing and cannot be framed;
    /// - `Cache-Control: no-store, max-age=0` when the handler set none: API answers carry tokens
    ///   and personal data that no browser or proxy should keep;
    /// - `Referrer-Policy: no-referrer` (OWASP; an API response is never a page that sends
    ///   forms, so the `Origin: null` drawback does not apply);
    /// - `Cross-Origin-Resource-Policy: same-origin` (OWASP): JSON is fetched with CORS, which
    ///   CORP does not affect, so only no-CORS reads from other origins are blocked.
    pub fn api() -> Self {
        Self {
            content_security_policy: HeaderSetting::if_absent(ContentSecurityPolicy::new(CSP_API)),
            cache_control: HeaderSetting::if_absent(CacheControl::default()),
            referrer_policy: HeaderSetting::if_absent(ReferrerPolicy::NoReferrer),
            cross_origin_resource_policy: HeaderSetting::if_absent(
                CrossOriginResourcePolicy::SameOrigin,
            ),
            ..Self::default()
        }
    }

    /// For server-rendered pages: [`SecurityHeadersConfig::default`] with a CSP that ordinary pages live with
    /// (Helmet 8's default without `upgrade-insecure-requests`: inline styles, `https:`
    /// stylesheets and fonts, `data:` images; scripts only from the same origin), and
    ///
    /// - `frame-ancestors 'self'` and `X-Frame-Options: SAMEORIGIN`, so the app may frame its own
    ///   pages;
    /// - `Cross-Origin-Opener-Policy: same-origin-allow-popups`, so "sign in with ..." and payment
    ///   popups can still talk back to the page that opened them.
    pub fn web_app() -> Self {
        Self {
            content_security_policy: HeaderSetting::if_absent(ContentSecurityPolicy::new(
                CSP_WEB_APP,
            )),
            x_frame_options: HeaderSetting::if_absent(FrameOptions::SameOrigin),
            cross_origin_opener_policy: HeaderSetting::if_absent(
                CrossOriginOpenerPolicy::SameOriginAllowPopups,
            ),
            ..Self::default()
        }
    }

    /// Everything the OWASP Secure Headers Project recommends, for apps that have checked they
    /// can live with it: OWASP's CSP (with `upgrade-insecure-requests`), COEP `require-corp`,
    /// CORP `same-origin`, `Referrer-Policy: no-referrer`, OWASP's full Permissions-Policy,
    /// `Cache-Control: no-store, max-age=0`, and a longer removal list ([`REMOVE_STRICT`]).
    /// `Clear-Site-Data` is not sent: it belongs on a logout response, not on every one.
    pub fn strict() -> Self {
        Self {
            content_security_policy: HeaderSetting::if_absent(ContentSecurityPolicy::new(
                CSP_STRICT,
            )),
            referrer_policy: HeaderSetting::if_absent(ReferrerPolicy::NoReferrer),
            permissions_policy: HeaderSetting::if_absent(PermissionsPolicy::new(
                PERMISSIONS_STRICT,
            )),
            cross_origin_resource_policy: HeaderSetting::if_absent(
                CrossOriginResourcePolicy::SameOrigin,
            ),
            cross_origin_embedder_policy: HeaderSetting::if_absent(
                CrossOriginEmbedderPolicy::RequireCorp,
            ),
            cache_control: HeaderSetting::if_absent(CacheControl::default()),
            remove: names(REMOVE_STRICT),
            ..Self::default()
        }
    }
}
