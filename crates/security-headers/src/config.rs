//! The policy as plain data ([`SecurityHeadersConfig`]), how each header is inserted ([`Insert`]), and the
//! builder.

use std::borrow::Cow;

use palisade_core::{ConfigError, EnforcementMode};

use crate::{
    layer::SecurityHeadersLayer,
    policy::Policy,
    values::{
        CacheControl, ContentSecurityPolicy, CrossOriginEmbedderPolicy, CrossOriginOpenerPolicy,
        CrossOriginResourcePolicy, DnsPrefetchControl, FrameOptions, Hsts, PermissionsPolicy,
        PermittedCrossDomainPolicies, ReferrerPolicy,
    },
};

/// How a header is put on a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Insert {
    /// Set the header only if the handler (or an inner layer) did not: the handler's own value
    /// wins. The default, so that a route which knows better (a page that may be framed, a
    /// download with its own `Cache-Control`) is not overruled, and so that a policy layered on
    /// a sub-router takes precedence over an outer one.
    #[default]
    IfAbsent,
    /// Always set the header, replacing every value the handler set.
    Override,
    /// Do not touch the header: neither set it nor replace it. This is how a header is switched
    /// off.
    LeaveAlone,
}

/// One header's value and insert mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct HeaderSetting<V> {
    /// The value sent when the header is on.
    pub value: V,
    /// How it is inserted; [`Insert::LeaveAlone`] switches the header off.
    pub insert: Insert,
}

impl<V> HeaderSetting<V> {
    /// `value`, set if the handler did not set the header.
    pub const fn if_absent(value: V) -> Self {
        Self {
            value,
            insert: Insert::IfAbsent,
        }
    }

    /// `value`, replacing whatever the handler set.
    pub const fn overriding(value: V) -> Self {
        Self {
            value,
            insert: Insert::Override,
        }
    }

    /// Switched off; `value` is what would be sent if it were switched on.
    pub const fn off(value: V) -> Self {
        Self {
            value,
            insert: Insert::LeaveAlone,
        }
    }

    /// Whether the header is sent at all.
    pub const fn is_on(&self) -> bool {
        !matches!(self.insert, Insert::LeaveAlone)
    }

    /// Sets the value and switches the header on (keeping [`Insert::Override`] if it was set).
    fn set(&mut self, value: V) {
        self.value = value;
        if self.insert == Insert::LeaveAlone {
            self.insert = Insert::IfAbsent;
        }
    }
}

/// Names one of the headers this layer manages, for [`SecurityHeadersBuilder::insert_mode`] and
/// [`SecurityHeadersConfig::insert_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityHeader {
    /// `Strict-Transport-Security`.
    StrictTransportSecurity,
    /// `Content-Security-Policy` (or `-Report-Only`).
    ContentSecurityPolicy,
    /// `X-Content-Type-Options`.
    XContentTypeOptions,
    /// `X-Frame-Options`.
    XFrameOptions,
    /// `Referrer-Policy`.
    ReferrerPolicy,
    /// `Permissions-Policy`.
    PermissionsPolicy,
    /// `Cross-Origin-Opener-Policy`.
    CrossOriginOpenerPolicy,
    /// `Cross-Origin-Resource-Policy`.
    CrossOriginResourcePolicy,
    /// `Cross-Origin-Embedder-Policy`.
    CrossOriginEmbedderPolicy,
    /// `X-DNS-Prefetch-Control`.
    XDnsPrefetchControl,
    /// `X-Permitted-Cross-Domain-Policies`.
    XPermittedCrossDomainPolicies,
    /// `Origin-Agent-Cluster`.
    OriginAgentCluster,
    /// `Cache-Control`.
    CacheControl,
}

impl SecurityHeader {
    /// Every managed header, in the order they are inserted.
    pub const ALL: [Self; 13] = [
        Self::StrictTransportSecurity,
        Self::ContentSecurityPolicy,
        Self::XContentTypeOptions,
        Self::XFrameOptions,
        Self::ReferrerPolicy,
        Self::PermissionsPolicy,
        Self::CrossOriginOpenerPolicy,
        Self::CrossOriginResourcePolicy,
        Self::CrossOriginEmbedderPolicy,
        Self::XDnsPrefetchControl,
        Self::XPermittedCrossDomainPolicies,
        Self::OriginAgentCluster,
        Self::CacheControl,
    ];

    /// The header name (lowercase), as sent in enforce mode without report-only.
    pub const fn name(self) -> &'static str {
        match self {
            Self::StrictTransportSecurity => "strict-transport-security",
            Self::ContentSecurityPolicy => "content-security-policy",
            Self::XContentTypeOptions => "x-content-type-options",
            Self::XFrameOptions => "x-frame-options",
            Self::ReferrerPolicy => "referrer-policy",
            Self::PermissionsPolicy => "permissions-policy",
            Self::CrossOriginOpenerPolicy => "cross-origin-opener-policy",
            Self::CrossOriginResourcePolicy => "cross-origin-resource-policy",
            Self::CrossOriginEmbedderPolicy => "cross-origin-embedder-policy",
            Self::XDnsPrefetchControl => "x-dns-prefetch-control",
            Self::XPermittedCrossDomainPolicies => "x-permitted-cross-domain-policies",
            Self::OriginAgentCluster => "origin-agent-cluster",
            Self::CacheControl => "cache-control",
        }
    }

    /// The configuration key (the [`SecurityHeadersConfig`] field name).
    pub const fn key(self) -> &'static str {
        match self {
            Self::StrictTransportSecurity => "strict_transport_security",
            Self::ContentSecurityPolicy => "content_security_policy",
            Self::XContentTypeOptions => "x_content_type_options",
            Self::XFrameOptions => "x_frame_options",
            Self::ReferrerPolicy => "referrer_policy",
            Self::PermissionsPolicy => "permissions_policy",
            Self::CrossOriginOpenerPolicy => "cross_origin_opener_policy",
            Self::CrossOriginResourcePolicy => "cross_origin_resource_policy",
            Self::CrossOriginEmbedderPolicy => "cross_origin_embedder_policy",
            Self::XDnsPrefetchControl => "x_dns_prefetch_control",
            Self::XPermittedCrossDomainPolicies => "x_permitted_cross_domain_policies",
            Self::OriginAgentCluster => "origin_agent_cluster",
            Self::CacheControl => "cache_control",
        }
    }
}

/// The whole security-headers policy as plain data. Every field has a documented default (see
/// the crate docs' table and each value type); [`SecurityHeadersConfig::api`], [`SecurityHeadersConfig::web_app`] and
/// [`SecurityHeadersConfig::strict`] are the other presets.
///
/// With the `serde` feature, `SecurityHeadersConfig` deserializes from TOML/JSON; missing fields keep
/// [`SecurityHeadersConfig::default`]'s values, unknown fields are errors:
///
/// ```toml
/// mode = "enforce"                     # or "observe_only"
/// remove = ["server", "x-powered-by", "x-envoy-upstream-service-time"]
///
/// [strict_transport_security]
/// value = { max_age = 31536000, only_over_https = true, trust_x_forwarded_proto = true }
///
/// [content_security_policy]
/// value = { policy = "default-src 'self'; img-src 'self' https://cdn.example.com" }
/// insert = "override"                  # "if_absent" (default), "override", "leave_alone"
///
/// [cross_origin_embedder_policy]
/// value = "credentialless"
/// insert = "if_absent"
/// ```
///
/// `SecurityHeadersConfig` is validated by [`SecurityHeadersConfig::validate`] and turned into a layer by [`SecurityHeadersLayer::from_config`](crate::SecurityHeadersLayer::from_config);
/// both return a [`ConfigError`] naming the bad key instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct SecurityHeadersConfig {
    /// Enforce the policy, or only observe it. Default: [`EnforcementMode::Enforce`].
    ///
    /// In [`EnforcementMode::ObserveOnly`] the layer changes nothing a browser would enforce:
    /// it sends the report-only form of the headers that have one
    /// (`Content-Security-Policy-Report-Only`, `Cross-Origin-Opener-Policy-Report-Only`,
    /// `Cross-Origin-Embedder-Policy-Report-Only`, each only if that header is on), sends none of
    /// the others (HSTS in particular is cached by browsers for `max-age` and cannot be taken
    /// back), and removes nothing. Add a `report-to` or `report-uri` directive to the CSP to
    /// collect the reports.
    pub mode: EnforcementMode,
    /// `Strict-Transport-Security`. Default: `max-age=63072000; includeSubDomains` on every
    /// response.
    pub strict_transport_security: HeaderSetting<Hsts>,
    /// `Content-Security-Policy`. Default: [`ContentSecurityPolicy::default`].
    pub content_security_policy: HeaderSetting<ContentSecurityPolicy>,
    /// `X-Content-Type-Options: nosniff` (the only value): browsers must not guess a response's
    /// type, so an uploaded "image" is never run as a script. Default: on.
    pub x_content_type_options: Insert,
    /// `X-Frame-Options`. Default: `DENY`.
    pub x_frame_options: HeaderSetting<FrameOptions>,
    /// `Referrer-Policy`. Default: `same-origin`.
    pub referrer_policy: HeaderSetting<ReferrerPolicy>,
    /// `Permissions-Policy`. Default: [`PermissionsPolicy::default`].
    pub permissions_policy: HeaderSetting<PermissionsPolicy>,
    /// `Cross-Origin-Opener-Policy`. Default: `same-origin`.
    pub cross_origin_opener_policy: HeaderSetting<CrossOriginOpenerPolicy>,
    /// `Cross-Origin-Resource-Policy`. Default: `same-site`.
    pub cross_origin_resource_policy: HeaderSetting<CrossOriginResourcePolicy>,
    /// `Cross-Origin-Embedder-Policy`. Default: off (value `require-corp` when switched on).
    pub cross_origin_embedder_policy: HeaderSetting<CrossOriginEmbedderPolicy>,
    /// `X-DNS-Prefetch-Control`. Default: `off`.
    pub x_dns_prefetch_control: HeaderSetting<DnsPrefetchControl>,
    /// `X-Permitted-Cross-Domain-Policies`. Default: `none`.
    pub x_permitted_cross_domain_policies: HeaderSetting<PermittedCrossDomainPolicies>,
    /// `Origin-Agent-Cluster: ?1` (the only value sent): asks the browser to give this origin its
    /// own process/agent cluster instead of sharing one with its site, and disables
    /// `document.domain`. Default: on (Helmet does the same; OWASP does not list it).
    pub origin_agent_cluster: Insert,
    /// `Cache-Control`. Default: off (value `no-store, max-age=0` when switched on).
    pub cache_control: HeaderSetting<CacheControl>,
    /// Response headers to remove because they reveal the software stack. Names are
    /// case-insensitive; a name the policy also sets is a configuration error (use
    /// [`Insert::Override`] instead), and so are `content-length` and `transfer-encoding`, which
    /// frame the body. Default: `server`, `x-powered-by`. Removal happens in enforce mode only.
    pub remove: Vec<Cow<'static, str>>,
}

impl SecurityHeadersConfig {
    /// Validates the configuration without building a layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad key, such as
    /// `security_headers.content_security_policy`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Policy::compile(self.clone()).map(drop)
    }

    /// A builder starting from this configuration.
    pub fn into_builder(self) -> SecurityHeadersBuilder {
        SecurityHeadersBuilder { config: self }
    }

    /// How `header` is inserted.
    pub fn insert_mode(&self, header: SecurityHeader) -> Insert {
        match header {
            SecurityHeader::StrictTransportSecurity => self.strict_transport_security.insert,
            SecurityHeader::ContentSecurityPolicy => self.content_security_policy.insert,
            SecurityHeader::XContentTypeOptions => self.x_content_type_options,
            SecurityHeader::XFrameOptions => self.x_frame_options.insert,
            SecurityHeader::ReferrerPolicy => self.referrer_policy.insert,
            SecurityHeader::PermissionsPolicy => self.permissions_policy.insert,
            SecurityHeader::CrossOriginOpenerPolicy => self.cross_origin_opener_policy.insert,
            SecurityHeader::CrossOriginResourcePolicy => self.cross_origin_resource_policy.insert,
            SecurityHeader::CrossOriginEmbedderPolicy => self.cross_origin_embedder_policy.insert,
            SecurityHeader::XDnsPrefetchControl => self.x_dns_prefetch_control.insert,
            SecurityHeader::XPermittedCrossDomainPolicies => {
                self.x_permitted_cross_domain_policies.insert
            }
            SecurityHeader::OriginAgentCluster => self.origin_agent_cluster,
            SecurityHeader::CacheControl => self.cache_control.insert,
        }
    }

    /// Whether `header` is on.
    pub fn is_on(&self, header: SecurityHeader) -> bool {
        self.insert_mode(header) != Insert::LeaveAlone
    }

    fn insert_mut(&mut self, header: SecurityHeader) -> &mut Insert {
        match header {
            SecurityHeader::StrictTransportSecurity => &mut self.strict_transport_security.insert,
            SecurityHeader::ContentSecurityPolicy => &mut self.content_security_policy.insert,
            SecurityHeader::XContentTypeOptions => &mut self.x_content_type_options,
            SecurityHeader::XFrameOptions => &mut self.x_frame_options.insert,
            SecurityHeader::ReferrerPolicy => &mut self.referrer_policy.insert,
            SecurityHeader::PermissionsPolicy => &mut self.permissions_policy.insert,
            SecurityHeader::CrossOriginOpenerPolicy => &mut self.cross_origin_opener_policy.insert,
            SecurityHeader::CrossOriginResourcePolicy => {
                &mut self.cross_origin_resource_policy.insert
            }
            SecurityHeader::CrossOriginEmbedderPolicy => {
                &mut self.cross_origin_embedder_policy.insert
            }
            SecurityHeader::XDnsPrefetchControl => &mut self.x_dns_prefetch_control.insert,
            SecurityHeader::XPermittedCrossDomainPolicies => {
                &mut self.x_permitted_cross_domain_policies.insert
            }
            SecurityHeader::OriginAgentCluster => &mut self.origin_agent_cluster,
            SecurityHeader::CacheControl => &mut self.cache_control.insert,
        }
    }
}

/// Builds a [`SecurityHeadersLayer`] from a preset plus changes; start it with
/// [`SecurityHeadersLayer::builder`] (the default policy) or [`SecurityHeadersConfig::into_builder`] (any
/// preset or loaded configuration).
///
/// Setting a header's value switches the header on (with [`Insert::IfAbsent`] unless
/// [`Insert::Override`] was chosen); [`insert_mode`](Self::insert_mode) changes how it is
/// inserted and [`leave_alone`](Self::leave_alone) switches it off. Nothing is validated until
/// [`build`](Self::build).
///
/// ```
/// use palisade_security_headers::{
///     SecurityHeadersConfig, CrossOriginEmbedderPolicy, FrameOptions, Insert, SecurityHeader,
///     SecurityHeadersLayer,
/// };
///
/// let layer = SecurityHeadersLayer::builder()
///     .content_security_policy("default-src 'self'; img-src 'self' https://cdn.example.com")
///     .x_frame_options(FrameOptions::SameOrigin)
///     .insert_mode(SecurityHeader::XFrameOptions, Insert::Override)
///     .cross_origin_embedder_policy(CrossOriginEmbedderPolicy::Credentialless)
///     .leave_alone(SecurityHeader::OriginAgentCluster)
///     .remove_header("x-envoy-upstream-service-time")
///     .build()
///     .expect("valid policy");
/// assert!(layer.config().is_on(SecurityHeader::CrossOriginEmbedderPolicy));
///
/// // Invalid values are errors, not panics.
/// let err = SecurityHeadersConfig::api().into_builder().content_security_policy("default-src self").build().unwrap_err();
/// assert_eq!(err.key(), "security_headers.content_security_policy");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SecurityHeadersBuilder {
    config: SecurityHeadersConfig,
}

impl SecurityHeadersBuilder {
    palisade_core::enforcement_setters!("count what would be set, leave responses as they are.");

    /// The HSTS policy (switches HSTS on).
    pub fn strict_transport_security(mut self, hsts: Hsts) -> Self {
        self.config.strict_transport_security.set(hsts);
        self
    }

    /// The CSP text, enforced (switches CSP on; keeps the report-only flag).
    pub fn content_security_policy(mut self, policy: impl Into<Cow<'static, str>>) -> Self {
        let report_only = self.config.content_security_policy.value.report_only;
        self.config
            .content_security_policy
            .set(ContentSecurityPolicy {
                policy: policy.into(),
                report_only,
            });
        self
    }

    /// Sends the CSP as `Content-Security-Policy-Report-Only` (`true`) or enforced (`false`).
    pub fn csp_report_only(mut self, report_only: bool) -> Self {
        self.config.content_security_policy.value.report_only = report_only;
        self
    }

    /// `X-Frame-Options` (switches it on).
    pub fn x_frame_options(mut self, value: FrameOptions) -> Self {
        self.config.x_frame_options.set(value);
        self
    }

    /// `Referrer-Policy` (switches it on).
    pub fn referrer_policy(mut self, value: ReferrerPolicy) -> Self {
        self.config.referrer_policy.set(value);
        self
    }

    /// `Permissions-Policy` text (switches it on).
    pub fn permissions_policy(mut self, policy: impl Into<Cow<'static, str>>) -> Self {
        self.config
            .permissions_policy
            .set(PermissionsPolicy::new(policy));
        self
    }

    /// `Cross-Origin-Opener-Policy` (switches it on).
    pub fn cross_origin_opener_policy(mut self, value: CrossOriginOpenerPolicy) -> Self {
        self.config.cross_origin_opener_policy.set(value);
        self
    }

    /// `Cross-Origin-Resource-Policy` (switches it on).
    pub fn cross_origin_resource_policy(mut self, value: CrossOriginResourcePolicy) -> Self {
        self.config.cross_origin_resource_policy.set(value);
        self
    }

    /// `Cross-Origin-Embedder-Policy` (switches it on; it is off by default).
    pub fn cross_origin_embedder_policy(mut self, value: CrossOriginEmbedderPolicy) -> Self {
        self.config.cross_origin_embedder_policy.set(value);
        self
    }

    /// `X-DNS-Prefetch-Control` (switches it on).
    pub fn x_dns_prefetch_control(mut self, value: DnsPrefetchControl) -> Self {
        self.config.x_dns_prefetch_control.set(value);
        self
    }

    /// `X-Permitted-Cross-Domain-Policies` (switches it on).
    pub fn x_permitted_cross_domain_policies(
        mut self,
        value: PermittedCrossDomainPolicies,
    ) -> Self {
        self.config.x_permitted_cross_domain_policies.set(value);
        self
    }

    /// `Cache-Control` for responses without one (switches it on; off by default).
    pub fn cache_control(mut self, value: impl Into<Cow<'static, str>>) -> Self {
        self.config.cache_control.set(CacheControl::new(value));
        self
    }

    /// How `header` is inserted; [`Insert::LeaveAlone`] switches it off.
    pub fn insert_mode(mut self, header: SecurityHeader, insert: Insert) -> Self {
        *self.config.insert_mut(header) = insert;
        self
    }

    /// Switches `header` off: the layer neither sets nor replaces it.
    pub fn leave_alone(self, header: SecurityHeader) -> Self {
        self.insert_mode(header, Insert::LeaveAlone)
    }

    /// Adds `name` to the headers removed from responses.
    pub fn remove_header(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.remove.push(name.into());
        self
    }

    /// Takes `name` off the removal list (case-insensitive), so the handler's value is sent.
    pub fn keep_header(mut self, name: &str) -> Self {
        self.config.remove.retain(|n| !n.eq_ignore_ascii_case(name));
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &SecurityHeadersConfig {
        &self.config
    }

    /// The configuration, unvalidated.
    pub fn into_config(self) -> SecurityHeadersConfig {
        self.config
    }

    /// Validates every value and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad key.
    pub fn build(self) -> Result<SecurityHeadersLayer, ConfigError> {
        SecurityHeadersLayer::from_config(self.config)
    }
}

impl From<SecurityHeadersConfig> for SecurityHeadersBuilder {
    fn from(config: SecurityHeadersConfig) -> Self {
        Self { config }
    }
}
