//! The value of each header: small enums for the headers with a fixed vocabulary, validated
//! strings for the policy headers (CSP, Permissions-Policy, Cache-Control).
//!
//! Every type's [`Default`] is the value [`SecurityHeadersConfig::default`](crate::SecurityHeadersConfig::default) uses, so a
//! partially written serde configuration falls back to the documented default.

use std::{borrow::Cow, time::Duration};

/// `Strict-Transport-Security`: tells browsers to use HTTPS only for this host (and, with
/// `includeSubDomains`, its subdomains) for `max_age` seconds.
///
/// Default: `max-age=63072000; includeSubDomains` (two years, as OWASP recommends; Helmet uses one
/// year), no `preload`, sent on every response.
///
/// Browsers ignore this header on responses that arrived over plain HTTP (RFC 6797 §8.1), so
/// sending it everywhere is harmless and works behind any TLS terminator. Set
/// [`only_over_https`](Self::only_over_https) to send it only on requests known to have arrived
/// over HTTPS: the request URI has the `https` scheme (HTTP/2, absolute-form), or, when
/// [`trust_x_forwarded_proto`](Self::trust_x_forwarded_proto) is set, the last
/// `X-Forwarded-Proto` element added by your TLS terminator is `https`.
// Plain data mirroring the header's flags and the two transport switches.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Hsts {
    /// `max-age` in seconds. `0` tells browsers to forget the policy (the way to turn HSTS off
    /// after it was sent). Default: `63072000` (two years).
    pub max_age: u64,
    /// Adds `includeSubDomains`. Default: `true`. Turn it off if any subdomain is still served
    /// over plain HTTP.
    pub include_subdomains: bool,
    /// Adds `preload` (asks browsers to ship the host in their preload list; hard to undo).
    /// Requires `include_subdomains` and a `max_age` of at least one year. Default: `false`.
    pub preload: bool,
    /// Sends the header only on requests known to have arrived over HTTPS. Default: `false`.
    ///
    /// A request counts as HTTPS when its URI carries the `https` scheme (hyper sets it for
    /// HTTP/2; HTTP/1.1 over direct TLS leaves no trace in the request, so keep this off there)
    /// or, with [`trust_x_forwarded_proto`](Self::trust_x_forwarded_proto), when the proxy says
    /// so.
    pub only_over_https: bool,
    /// Believes `X-Forwarded-Proto` when deciding whether a request arrived over HTTPS. Only the
    /// last element of the last `X-Forwarded-Proto` line counts: it is the one your nearest
    /// proxy set or appended, while earlier ones may come from the client. Enable it only when a
    /// TLS terminator you control always sets or appends this header. Requires
    /// [`only_over_https`](Self::only_over_https). Default: `false`.
    pub trust_x_forwarded_proto: bool,
}

/// Two years in seconds, the OWASP recommendation.
pub(crate) const TWO_YEARS: u64 = 63_072_000;
/// One year in seconds, the minimum `max-age` of the HSTS preload list.
pub(crate) const ONE_YEAR: u64 = 31_536_000;

impl Default for Hsts {
    fn default() -> Self {
        Self {
            max_age: TWO_YEARS,
            include_subdomains: true,
            preload: false,
            only_over_https: false,
            trust_x_forwarded_proto: false,
        }
    }
}

impl Hsts {
    /// The default policy with a different `max-age` (whole seconds; fractions are dropped).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.as_secs();
        self
    }

    /// The header text, such as `max-age=63072000; includeSubDomains`.
    pub fn header_text(&self) -> String {
        let mut text = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            text.push_str("; includeSubDomains");
        }
        if self.preload {
            text.push_str("; preload");
        }
        text
    }
}

/// `X-Frame-Options`: whether other pages may show this one in a frame (clickjacking).
/// `ALLOW-FROM` is obsolete and not offered: use CSP `frame-ancestors` to allow named origins.
///
/// Default: [`Deny`](Self::Deny), as OWASP recommends (Helmet: `SAMEORIGIN`). It matches the
/// default CSP's `frame-ancestors 'none'`, which modern browsers obey instead of this header; it
/// stays for older browsers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum FrameOptions {
    /// `DENY`: never framed.
    #[default]
    Deny,
    /// `SAMEORIGIN`: framed only by pages of the same origin.
    #[cfg_attr(feature = "serde", serde(alias = "sameorigin"))]
    SameOrigin,
}

impl FrameOptions {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "DENY",
            Self::SameOrigin => "SAMEORIGIN",
        }
    }
}

/// `Referrer-Policy`: how much of the current URL browsers send in `Referer` (and, for
/// non-CORS POSTs, whether `Origin` is `null`).
///
/// Default: [`SameOrigin`](Self::SameOrigin): nothing leaves the origin, while same-origin
/// requests keep their `Referer` and a real `Origin`. OWASP and Helmet use `no-referrer`, which
/// also makes browsers send `Origin: null` on same-origin form POSTs (Fetch standard, "append a
/// request Origin header") and so breaks CSRF defences that check `Origin`; [`api`] and
/// [`strict`] use `no-referrer`.
///
/// [`api`]: crate::SecurityHeadersConfig::api
/// [`strict`]: crate::SecurityHeadersConfig::strict
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum ReferrerPolicy {
    /// `no-referrer`.
    NoReferrer,
    /// `no-referrer-when-downgrade`.
    NoReferrerWhenDowngrade,
    /// `origin`.
    Origin,
    /// `origin-when-cross-origin`.
    OriginWhenCrossOrigin,
    /// `same-origin`.
    #[default]
    SameOrigin,
    /// `strict-origin`.
    StrictOrigin,
    /// `strict-origin-when-cross-origin` (the browsers' own default).
    StrictOriginWhenCrossOrigin,
    /// `unsafe-url`: the full URL everywhere. Leaks paths and query strings; rarely right.
    UnsafeUrl,
}

impl ReferrerPolicy {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoReferrer => "no-referrer",
            Self::NoReferrerWhenDowngrade => "no-referrer-when-downgrade",
            Self::Origin => "origin",
            Self::OriginWhenCrossOrigin => "origin-when-cross-origin",
            Self::SameOrigin => "same-origin",
            Self::StrictOrigin => "strict-origin",
            Self::StrictOriginWhenCrossOrigin => "strict-origin-when-cross-origin",
            Self::UnsafeUrl => "unsafe-url",
        }
    }
}

/// `Cross-Origin-Opener-Policy`: whether cross-origin windows this page opens, or that open it,
/// share its browsing context group (`window.opener`), which isolates it from cross-window
/// attacks (XS-Leaks, Spectre).
///
/// Default: [`SameOrigin`](Self::SameOrigin) (OWASP, Helmet). It cuts the link to cross-origin
/// popups, which breaks popup-based OAuth and payment flows; [`web_app`] uses
/// `same-origin-allow-popups` for that reason.
///
/// [`web_app`]: crate::SecurityHeadersConfig::web_app
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum CrossOriginOpenerPolicy {
    /// `same-origin`.
    #[default]
    SameOrigin,
    /// `same-origin-allow-popups`: keeps references to popups this page opens.
    SameOriginAllowPopups,
    /// `noopener-allow-popups`: always opened without an opener, even by same-origin pages.
    NoopenerAllowPopups,
    /// `unsafe-none`: no isolation (the browsers' default).
    UnsafeNone,
}

impl CrossOriginOpenerPolicy {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SameOrigin => "same-origin",
            Self::SameOriginAllowPopups => "same-origin-allow-popups",
            Self::NoopenerAllowPopups => "noopener-allow-popups",
            Self::UnsafeNone => "unsafe-none",
        }
    }
}

/// `Cross-Origin-Resource-Policy`: which sites may load this response as a no-CORS subresource
/// (`<img>`, `<script>`), which keeps it out of other sites' processes (Spectre). CORS requests
/// (`fetch` from another origin with CORS headers) are not affected.
///
/// Default: [`SameSite`](Self::SameSite). OWASP and Helmet use `same-origin`, which blocks assets
/// served from a sibling subdomain or another port (`app.example.com` loading a script from
/// `api.example.com`, helmet#343, #406); `same-site` still blocks every other site.
/// [`api`](crate::SecurityHeadersConfig::api) and [`strict`](crate::SecurityHeadersConfig::strict) use `same-origin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum CrossOriginResourcePolicy {
    /// `same-origin`.
    SameOrigin,
    /// `same-site`.
    #[default]
    SameSite,
    /// `cross-origin`: any site may embed the resource (public assets, CDNs).
    CrossOrigin,
}

impl CrossOriginResourcePolicy {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SameOrigin => "same-origin",
            Self::SameSite => "same-site",
            Self::CrossOrigin => "cross-origin",
        }
    }
}

/// `Cross-Origin-Embedder-Policy`: requires every cross-origin subresource to opt in (CORP or
/// CORS) before the page may load it. Together with COOP `same-origin` it makes the page
/// cross-origin isolated (`SharedArrayBuffer`, precise timers).
///
/// Off by default ([`Insert::LeaveAlone`](crate::Insert::LeaveAlone)) in every preset except
/// [`strict`](crate::SecurityHeadersConfig::strict): it breaks any page that loads third-party images, scripts,
/// fonts or iframes that do not send CORP/CORS (helmet#343, which made Helmet 7 turn it off,
/// helmet#411). The value used when it is switched on is [`RequireCorp`](Self::RequireCorp)
/// (OWASP); [`Credentialless`](Self::Credentialless) breaks less.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum CrossOriginEmbedderPolicy {
    /// `require-corp`.
    #[default]
    RequireCorp,
    /// `credentialless`: cross-origin no-CORS requests are sent without credentials instead of
    /// being blocked.
    Credentialless,
    /// `unsafe-none`: no requirement (the browsers' default).
    UnsafeNone,
}

impl CrossOriginEmbedderPolicy {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RequireCorp => "require-corp",
            Self::Credentialless => "credentialless",
            Self::UnsafeNone => "unsafe-none",
        }
    }
}

/// `X-DNS-Prefetch-Control`: whether browsers resolve the domains of links on the page ahead of
/// time (which tells DNS resolvers what the page links to).
///
/// Default: [`Off`](Self::Off), as OWASP and Helmet (privacy over a small speed-up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum DnsPrefetchControl {
    /// `off`.
    #[default]
    Off,
    /// `on`.
    On,
}

impl DnsPrefetchControl {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
        }
    }
}

/// `X-Permitted-Cross-Domain-Policies`: whether Adobe clients (Flash, Acrobat) may read
/// cross-domain policy files from this host to load its data.
///
/// Default: [`None`](Self::None), as OWASP and Helmet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum PermittedCrossDomainPolicies {
    /// `none`: no policy file is allowed.
    #[default]
    None,
    /// `master-only`: only `/crossdomain.xml`.
    MasterOnly,
    /// `by-content-type`: only files served as `text/x-cross-domain-policy`.
    ByContentType,
    /// `all`: any policy file.
    All,
}

impl PermittedCrossDomainPolicies {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::MasterOnly => "master-only",
            Self::ByContentType => "by-content-type",
            Self::All => "all",
        }
    }
}

/// `Content-Security-Policy`: which sources the page may load scripts, styles, images, frames and
/// so on from, and who may frame it. The main defence against cross-site scripting.
///
/// The policy text is validated when the layer is built: directive names must be
/// `[A-Za-z0-9-]`, each directive may appear once, keywords such as `'self'` must be quoted (an
/// unquoted `self` means a host called "self"), and a comma (which would start a second policy)
/// is refused.
///
/// Default: `default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none';
/// object-src 'none'`: OWASP's policy without `upgrade-insecure-requests` (it breaks plain-HTTP
/// development and intranet hosts, and Safari upgrades even `http://localhost`) and without the
/// deprecated `block-all-mixed-content`. It blocks inline scripts and styles; server-rendered
/// pages that need them start from [`SecurityHeadersConfig::web_app`](crate::SecurityHeadersConfig::web_app).
///
/// Policies given as `&'static str` are inserted without even a reference count per response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ContentSecurityPolicy {
    /// The policy text, directives separated by `;`.
    pub policy: Cow<'static, str>,
    /// Sends the policy as `Content-Security-Policy-Report-Only`: browsers report violations
    /// (to the policy's `report-to`/`report-uri`, or the console) but block nothing. Default:
    /// `false`. Observe-only mode always sends the report-only header.
    pub report_only: bool,
}

impl Default for ContentSecurityPolicy {
    fn default() -> Self {
        Self::new(crate::presets::CSP_DEFAULT)
    }
}

impl ContentSecurityPolicy {
    /// An enforced policy.
    pub fn new(policy: impl Into<Cow<'static, str>>) -> Self {
        Self {
            policy: policy.into(),
            report_only: false,
        }
    }

    /// The same policy, sent as `Content-Security-Policy-Report-Only`.
    #[must_use]
    pub fn report_only(mut self) -> Self {
        self.report_only = true;
        self
    }

    /// The policy with directive `name` set to `value` (replacing that directive if present,
    /// appending it otherwise), for adjusting a preset:
    ///
    /// ```
    /// use palisade_security_headers::ContentSecurityPolicy;
    ///
    /// let csp = ContentSecurityPolicy::default().with_directive("img-src", "'self' https://cdn.example.com");
    /// assert!(csp.policy.ends_with("; img-src 'self' https://cdn.example.com"));
    /// let csp = csp.with_directive("frame-ancestors", "'self'");
    /// assert!(csp.policy.contains("frame-ancestors 'self';"));
    /// ```
    #[must_use]
    pub fn with_directive(mut self, name: &str, value: &str) -> Self {
        let mut directives: Vec<String> = Vec::new();
        let mut replaced = false;
        for directive in self.policy.split(';') {
            let directive = directive.trim();
            if directive.is_empty() {
                continue;
            }
            let directive_name = directive.split_ascii_whitespace().next().unwrap_or("");
            if directive_name.eq_ignore_ascii_case(name) {
                if !replaced {
                    directives.push(join_directive(name, value));
                    replaced = true;
                }
            } else {
                directives.push(directive.to_owned());
            }
        }
        if !replaced {
            directives.push(join_directive(name, value));
        }
        self.policy = Cow::Owned(directives.join("; "));
        self
    }
}

fn join_directive(name: &str, value: &str) -> String {
    let value = value.trim();
    if value.is_empty() {
        name.to_owned()
    } else {
        format!("{name} {value}")
    }
}

/// `Permissions-Policy`: which powerful browser features (camera, geolocation, payment, ...) the
/// page and its frames may use. A structured-field dictionary such as
/// `camera=(), geolocation=(self "https://maps.example.com")`, validated when the layer is built
/// (lowercase feature names, each once, each with an allowlist).
///
/// Default: disables the device and payment features that ordinary apps never use:
/// `accelerometer=(), browsing-topics=(), camera=(), display-capture=(), geolocation=(),
/// gyroscope=(), hid=(), magnetometer=(), microphone=(), midi=(), payment=(), serial=(), usb=(),
/// xr-spatial-tracking=()`. OWASP disables a longer list that includes `fullscreen` (video
/// players), `publickey-credentials-get` (passkey sign-in), `clipboard-write` (copy buttons) and
/// `sync-xhr`, which break ordinary apps, plus the retired `interest-cohort` (browsers log
/// "unrecognized feature"); [`strict`](crate::SecurityHeadersConfig::strict) sends OWASP's list with
/// `browsing-topics` instead of `interest-cohort`. Helmet sends no Permissions-Policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(transparent))]
pub struct PermissionsPolicy(pub Cow<'static, str>);

impl Default for PermissionsPolicy {
    fn default() -> Self {
        Self(Cow::Borrowed(crate::presets::PERMISSIONS_DEFAULT))
    }
}

impl PermissionsPolicy {
    /// A policy from its header text.
    pub fn new(policy: impl Into<Cow<'static, str>>) -> Self {
        Self(policy.into())
    }

    /// The header text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Cache-Control` for responses whose handler set none: `no-store` keeps API answers (tokens,
/// personal data) out of browser and proxy caches.
///
/// Off ([`Insert::LeaveAlone`](crate::Insert::LeaveAlone)) in [`SecurityHeadersConfig::default`] and
/// [`web_app`](crate::SecurityHeadersConfig::web_app), whose pages and assets should stay cacheable; on in
/// [`api`](crate::SecurityHeadersConfig::api) and [`strict`](crate::SecurityHeadersConfig::strict). The value is OWASP's
/// `no-store, max-age=0`. Because the default insert mode is set-if-absent, a handler that sets
/// its own `Cache-Control` keeps it.
///
/// [`SecurityHeadersConfig::default`]: crate::SecurityHeadersConfig::default
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(transparent))]
pub struct CacheControl(pub Cow<'static, str>);

impl Default for CacheControl {
    fn default() -> Self {
        Self(Cow::Borrowed(crate::presets::NO_STORE))
    }
}

impl CacheControl {
    /// A value from its header text.
    pub fn new(value: impl Into<Cow<'static, str>>) -> Self {
        Self(value.into())
    }

    /// The header text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// ===== validation =====

/// Source keywords that only mean something when single-quoted.
const CSP_KEYWORDS: &[&str] = &[
    "self",
    "none",
    "unsafe-inline",
    "unsafe-eval",
    "unsafe-hashes",
    "unsafe-allow-redirects",
    "strict-dynamic",
    "report-sample",
    "wasm-unsafe-eval",
    "inline-speculation-rules",
];

/// Header-value text that is safe everywhere: visible ASCII, space and tab. (`HeaderValue` also
/// accepts obsolete 8-bit text, which no security header uses.)
fn check_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    match text
        .bytes()
        .find(|&b| !(b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b)))
    {
        Some(b) => Err(format!(
            "contains byte 0x{b:02x}: only visible ASCII, spaces and tabs are allowed"
        )),
        None => Ok(()),
    }
}

/// Validates a CSP policy (see [`ContentSecurityPolicy`]).
pub(crate) fn check_csp(policy: &str) -> Result<(), String> {
    check_text(policy)?;
    if policy.contains(',') {
        return Err(
            "contains a comma, which starts a second policy; send one policy with `;` between directives"
                .into(),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for directive in policy.split(';') {
        let mut parts = directive.split_ascii_whitespace();
        let Some(name) = parts.next() else { continue };
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "directive name {name:?} must be letters, digits and `-`"
            ));
        }
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "directive {name:?} appears twice; browsers ignore the second one"
            ));
        }
        seen.push(name);
        let lower = name.to_ascii_lowercase();
        let takes_sources = lower.ends_with("-src")
            || matches!(
                lower.as_str(),
                "base-uri" | "form-action" | "frame-ancestors"
            );
        if takes_sources
            && let Some(bare) =
                parts.find(|v| CSP_KEYWORDS.iter().any(|k| v.eq_ignore_ascii_case(k)))
        {
            return Err(format!(
                "directive {name:?}: keyword {bare:?} must be quoted ('{bare}'); unquoted it names a host"
            ));
        }
    }
    if seen.is_empty() {
        return Err("has no directives".into());
    }
    Ok(())
}

/// Validates a Permissions-Policy dictionary (see [`PermissionsPolicy`]).
pub(crate) fn check_permissions_policy(policy: &str) -> Result<(), String> {
    check_text(policy)?;
    let mut seen: Vec<&str> = Vec::new();
    for member in policy.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            return Err("has an empty member (two commas in a row or a trailing comma)".into());
        }
        let Some((feature, allowlist)) = member.split_once('=') else {
            return Err(format!(
                "{member:?} has no allowlist; write {member}=() to disable it or {member}=(self) to allow it here"
            ));
        };
        let key_ok = feature
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
            && feature.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'.' | b'*')
            });
        if !key_ok {
            return Err(format!(
                "feature name {feature:?} must be lowercase letters, digits, `-`, `_`, `.`"
            ));
        }
        if seen.contains(&feature) {
            return Err(format!("feature {feature:?} appears twice"));
        }
        seen.push(feature);
        let allowlist = allowlist.trim_end_matches([' ', '\t']);
        if allowlist.is_empty() || allowlist.starts_with([' ', '\t']) {
            return Err(format!(
                "feature {feature:?} needs an allowlist right after `=`, such as () or (self)"
            ));
        }
        let mut depth = 0_i32;
        for b in allowlist.bytes() {
            match b {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            if !(0..=1).contains(&depth) {
                break;
            }
        }
        if depth != 0 {
            return Err(format!(
                "feature {feature:?} has unbalanced parentheses in {allowlist:?}"
            ));
        }
    }
    Ok(())
}

/// Validates a Cache-Control value: comma-separated `token` or `token=value` directives.
pub(crate) fn check_cache_control(value: &str) -> Result<(), String> {
    check_text(value)?;
    for directive in value.split(',') {
        let directive = directive.trim_matches([' ', '\t']);
        let name = directive.split_once('=').map_or(directive, |(n, _)| n);
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(format!(
                "directive {directive:?} is not `name` or `name=value`"
            ));
        }
    }
    Ok(())
}

/// Validates the HSTS settings (see [`Hsts`]).
pub(crate) fn check_hsts(hsts: &Hsts) -> Result<(), (&'static str, String)> {
    if hsts.preload && !(hsts.include_subdomains && hsts.max_age >= ONE_YEAR) {
        return Err((
            "preload",
            format!(
                "needs include_subdomains and a max_age of at least {ONE_YEAR} s (one year), as the preload list requires"
            ),
        ));
    }
    if hsts.trust_x_forwarded_proto && !hsts.only_over_https {
        return Err((
            "trust_x_forwarded_proto",
            "has no effect unless only_over_https is set (HSTS is otherwise sent on every response)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_accepts_real_policies() {
        for policy in [
            crate::presets::CSP_DEFAULT,
            crate::presets::CSP_API,
            crate::presets::CSP_WEB_APP,
            crate::presets::CSP_STRICT,
            "default-src 'self'; script-src 'self' 'nonce-abc123' https://cdn.example.com;",
            "upgrade-insecure-requests",
            "default-src 'none'; report-to csp-endpoint",
            "sandbox allow-scripts; trusted-types none",
        ] {
            assert_eq!(check_csp(policy), Ok(()), "{policy}");
        }
    }

    #[test]
    fn csp_refuses_mistakes() {
        for (policy, needle) in [
            ("", "empty"),
            ("   ;  ", "no directives"),
            (";;", "no directives"),
            ("default-src self", "must be quoted"),
            ("script-src 'self' unsafe-inline", "must be quoted"),
            ("frame-ancestors none", "must be quoted"),
            ("default-src 'self', script-src 'none'", "comma"),
            ("default-src 'self'; default-src 'none'", "twice"),
            ("default_src 'self'", "directive name"),
            ("default-src 'self'\r\nX-Injected: 1", "0x0d"),
            ("default-src 'sélf'", "0xc3"),
        ] {
            let err = check_csp(policy).unwrap_err();
            assert!(err.contains(needle), "{policy:?}: {err}");
        }
    }

    #[test]
    fn with_directive_replaces_or_appends() {
        let csp = ContentSecurityPolicy::new("default-src 'self'; img-src 'self'")
            .with_directive("IMG-SRC", "'self' data:")
            .with_directive("upgrade-insecure-requests", "");
        assert_eq!(
            csp.policy,
            "default-src 'self'; IMG-SRC 'self' data:; upgrade-insecure-requests"
        );
        assert_eq!(check_csp(&csp.policy), Ok(()));
    }

    #[test]
    fn permissions_policy_validation() {
        for policy in [
            crate::presets::PERMISSIONS_DEFAULT,
            crate::presets::PERMISSIONS_STRICT,
            "geolocation=(self \"https://maps.example.com\"), fullscreen=*",
            "camera=()",
            "sync-xhr=self",
        ] {
            assert_eq!(check_permissions_policy(policy), Ok(()), "{policy}");
        }
        for (policy, needle) in [
            ("camera", "no allowlist"),
            ("camera=(), ", "empty member"),
            ("Camera=()", "lowercase"),
            ("camera=(), camera=(self)", "twice"),
            ("camera=", "needs an allowlist"),
            ("camera=(self", "unbalanced"),
            ("camera=self)", "unbalanced"),
            ("camera=()\n", "0x0a"),
        ] {
            let err = check_permissions_policy(policy).unwrap_err();
            assert!(err.contains(needle), "{policy:?}: {err}");
        }
    }

    #[test]
    fn cache_control_validation() {
        for value in [
            "no-store",
            "no-store, max-age=0",
            "private, max-age=60",
            "no-cache=\"set-cookie\"",
        ] {
            assert_eq!(check_cache_control(value), Ok(()), "{value}");
        }
        for value in ["", "no store", "no-store,, private", "=1"] {
            assert!(check_cache_control(value).is_err(), "{value}");
        }
    }

    #[test]
    fn hsts_text_and_rules() {
        assert_eq!(
            Hsts::default().header_text(),
            "max-age=63072000; includeSubDomains"
        );
        let preload = Hsts {
            preload: true,
            ..Hsts::default()
        };
        assert_eq!(
            preload.header_text(),
            "max-age=63072000; includeSubDomains; preload"
        );
        assert_eq!(check_hsts(&preload), Ok(()));
        let short = Hsts::default().max_age(Duration::from_secs(300));
        assert_eq!(short.header_text(), "max-age=300; includeSubDomains");
        let bad_preload = Hsts {
            preload: true,
            ..short
        };
        assert_eq!(check_hsts(&bad_preload).unwrap_err().0, "preload");
        let no_subdomains = Hsts {
            preload: true,
            include_subdomains: false,
            ..Hsts::default()
        };
        assert_eq!(check_hsts(&no_subdomains).unwrap_err().0, "preload");
        let lonely_trust = Hsts {
            trust_x_forwarded_proto: true,
            ..Hsts::default()
        };
        assert_eq!(
            check_hsts(&lonely_trust).unwrap_err().0,
            "trust_x_forwarded_proto"
        );
        assert_eq!(
            Hsts {
                max_age: 0,
                include_subdomains: false,
                ..Hsts::default()
            }
            .header_text(),
            "max-age=0"
        );
    }
}
