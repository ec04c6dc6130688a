//! The compiled policy: every header name and value validated and encoded once, so that the
//! per-response work is a few map operations with precomputed values.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, header, uri::Scheme};
use palisade_core::ConfigError;

use crate::{
    config::{Insert, SecurityHeader, SecurityHeadersConfig},
    presets::HSTS_DEFAULT,
    values::{check_cache_control, check_csp, check_hsts, check_permissions_policy},
};

const PREFIX: &str = "security_headers";

const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
const COOP_REPORT_ONLY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy-report-only");
const CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");
const COEP: HeaderName = HeaderName::from_static("cross-origin-embedder-policy");
const COEP_REPORT_ONLY: HeaderName =
    HeaderName::from_static("cross-origin-embedder-policy-report-only");
const PERMITTED_CROSS_DOMAIN: HeaderName =
    HeaderName::from_static("x-permitted-cross-domain-policies");
const ORIGIN_AGENT_CLUSTER: HeaderName = HeaderName::from_static("origin-agent-cluster");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// One header to set: name, value, and whether to replace the handler's value.
#[derive(Debug, Clone)]
struct Entry {
    name: HeaderName,
    value: HeaderValue,
    overwrite: bool,
}

/// A validated policy, shared by every clone of the layer and service.
#[derive(Debug)]
pub(crate) struct Policy {
    config: SecurityHeadersConfig,
    /// Removed before anything is set (enforce mode only).
    remove: Box<[HeaderName]>,
    /// Set on every response.
    always: Box<[Entry]>,
    /// HSTS when it is sent only over HTTPS.
    https_only: Option<Entry>,
    trust_forwarded_proto: bool,
    /// `always` as a ready header map, and the same plus `https_only` (see [`Policy::apply`]).
    template: Templates,
}

/// The policy's headers as ready maps: a response starts from a copy of one and gets the
/// handler's own headers added, which costs a copy plus one insertion per handler header instead
/// of one insertion (a hash and a probe) per policy header and a table growth. Room is reserved
/// for a typical handler's headers so that the copy never grows.
#[derive(Debug)]
struct Templates {
    plain: HeaderMap,
    https: Option<HeaderMap>,
}

/// Room in a template for the handler's own headers (content type and length, a few more).
const HANDLER_HEADERS: usize = 8;

impl Templates {
    fn new(always: &[Entry], https_only: Option<&Entry>) -> Self {
        let build = |extra: Option<&Entry>| {
            let mut map = HeaderMap::with_capacity(always.len() + 1 + HANDLER_HEADERS);
            for entry in always.iter().chain(extra) {
                map.insert(entry.name.clone(), entry.value.clone());
            }
            map
        };
        Self {
            plain: build(None),
            https: https_only.map(|entry| build(Some(entry))),
        }
    }
}

/// What happens to a header the handler set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    /// Dropped: a leaking header on the removal list, or one the policy overrides.
    Drop,
    /// Replaces the policy's value (set-if-absent): the first value replaces, the rest append.
    Replace,
    /// Not the policy's business: kept as is.
    Keep,
}

impl Policy {
    /// Validates `config` and encodes every header.
    pub(crate) fn compile(config: SecurityHeadersConfig) -> Result<Self, ConfigError> {
        let mut out = Compiler {
            enforce: config.mode.enforces(),
            always: Vec::with_capacity(SecurityHeader::ALL.len()),
            managed: Vec::with_capacity(SecurityHeader::ALL.len()),
        };
        let (https_only, trust_forwarded_proto) = out.hsts(&config)?;
        out.csp(&config)?;

        out.fixed(
            header::X_CONTENT_TYPE_OPTIONS,
            "nosniff",
            config.x_content_type_options,
        );
        out.fixed(
            header::X_FRAME_OPTIONS,
            config.x_frame_options.value.as_str(),
            config.x_frame_options.insert,
        );
        out.fixed(
            header::REFERRER_POLICY,
            config.referrer_policy.value.as_str(),
            config.referrer_policy.insert,
        );

        let permissions = &config.permissions_policy;
        if permissions.is_on() {
            let bad = |p| err(SecurityHeader::PermissionsPolicy, p);
            check_permissions_policy(permissions.value.as_str()).map_err(bad)?;
            let value = cow_value(permissions.value.0.clone()).map_err(bad)?;
            out.value(PERMISSIONS_POLICY, value, permissions.insert);
        }

        out.reportable(
            COOP,
            COOP_REPORT_ONLY,
            config.cross_origin_opener_policy.value.as_str(),
            config.cross_origin_opener_policy.insert,
        );
        out.fixed(
            CORP,
            config.cross_origin_resource_policy.value.as_str(),
            config.cross_origin_resource_policy.insert,
        );
        out.reportable(
            COEP,
            COEP_REPORT_ONLY,
            config.cross_origin_embedder_policy.value.as_str(),
            config.cross_origin_embedder_policy.insert,
        );
        out.fixed(
            header::X_DNS_PREFETCH_CONTROL,
            config.x_dns_prefetch_control.value.as_str(),
            config.x_dns_prefetch_control.insert,
        );
        out.fixed(
            PERMITTED_CROSS_DOMAIN,
            config.x_permitted_cross_domain_policies.value.as_str(),
            config.x_permitted_cross_domain_policies.insert,
        );
        out.fixed(ORIGIN_AGENT_CLUSTER, "?1", config.origin_agent_cluster);

        let cache = &config.cache_control;
        if cache.is_on() {
            let bad = |p| err(SecurityHeader::CacheControl, p);
            check_cache_control(cache.value.as_str()).map_err(bad)?;
            let value = cow_value(cache.value.0.clone()).map_err(bad)?;
            out.value(header::CACHE_CONTROL, value, cache.insert);
        }

        let remove = removal_list(&config.remove, &out.managed)?;
        Ok(Self {
            remove: if out.enforce {
                remove.into_boxed_slice()
            } else {
                Box::default()
            },
            template: Templates::new(&out.always, https_only.as_ref()),
            always: out.always.into_boxed_slice(),
            https_only,
            trust_forwarded_proto,
            config,
        })
    }

    /// The configuration this policy was compiled from.
    pub(crate) fn config(&self) -> &SecurityHeadersConfig {
        &self.config
    }

    /// Whether HSTS must be decided per request (only sent over HTTPS).
    #[inline]
    pub(crate) fn needs_transport(&self) -> bool {
        self.https_only.is_some()
    }

    /// Whether `request` arrived over HTTPS, as far as this policy may tell.
    #[inline]
    pub(crate) fn is_https<B>(&self, request: &Request<B>) -> bool {
        request.uri().scheme() == Some(&Scheme::HTTPS)
            || (self.trust_forwarded_proto && forwarded_proto_is_https(request.headers()))
    }

    /// Removes the leaking headers, then sets the policy's headers; HSTS-over-HTTPS-only when
    /// `https`. The result is that of removing, then inserting each policy header (replacing the
    /// handler's value or only if absent, as configured); it is built the other way round, from a
    /// copy of the policy's headers plus the handler's, which is cheaper (see [`Templates`]).
    #[inline]
    pub(crate) fn apply(&self, headers: &mut HeaderMap, https: bool) {
        let template = match (&self.template.https, https) {
            (Some(with_hsts), true) => with_hsts,
            _ => &self.template.plain,
        };
        if template.is_empty() {
            for name in &self.remove {
                headers.remove(name);
            }
            return;
        }
        let own = std::mem::replace(headers, template.clone());
        let mut current = (None::<HeaderName>, Own::Keep);
        // The map yields each name once, followed by its further values without a name.
        for (name, value) in own {
            if let Some(name) = name {
                let fate = self.fate_of(&name, https);
                if fate == Own::Replace {
                    let _ = headers.try_insert(&name, value);
                } else if fate == Own::Keep {
                    let _ = headers.try_append(&name, value);
                }
                current = (Some(name), fate);
            } else if let (Some(name), Own::Replace | Own::Keep) = &current {
                let _ = headers.try_append(name, value);
            }
        }
    }

    /// The definition [`apply`](Self::apply) must match, written the direct way: remove the
    /// leaking headers, then insert each policy header, replacing or only if absent.
    #[cfg(test)]
    pub(crate) fn apply_by_insertion(&self, headers: &mut HeaderMap, https: bool) {
        for name in &self.remove {
            headers.remove(name);
        }
        let conditional = self.https_only.as_ref().filter(|_| https);
        for entry in self.always.iter().chain(conditional) {
            if entry.overwrite || !headers.contains_key(&entry.name) {
                headers.insert(entry.name.clone(), entry.value.clone());
            }
        }
    }

    /// What happens to the handler's header `name`: a short scan of the policy's names, cheaper
    /// than hashing for the dozen names a policy has.
    fn fate_of(&self, name: &HeaderName, https: bool) -> Own {
        if self.remove.contains(name) {
            return Own::Drop;
        }
        let conditional = self.https_only.as_ref().filter(|_| https);
        match self
            .always
            .iter()
            .chain(conditional)
            .find(|entry| entry.name == *name)
        {
            Some(entry) if entry.overwrite => Own::Drop,
            Some(_) => Own::Replace,
            None => Own::Keep,
        }
    }
}

/// Collects the entries of a policy being compiled.
struct Compiler {
    enforce: bool,
    always: Vec<Entry>,
    /// Every name the policy sets in enforce mode, so that removing one of them is refused.
    managed: Vec<HeaderName>,
}

impl Compiler {
    /// HSTS: always sent, or kept apart (with whether to trust `X-Forwarded-Proto`) when it goes
    /// out over HTTPS only.
    fn hsts(
        &mut self,
        config: &SecurityHeadersConfig,
    ) -> Result<(Option<Entry>, bool), ConfigError> {
        let hsts = &config.strict_transport_security;
        check_hsts(&hsts.value).map_err(|(field, problem)| {
            ConfigError::new(
                format!("{PREFIX}.strict_transport_security.{field}"),
                problem,
            )
        })?;
        if !hsts.is_on() {
            return Ok((None, false));
        }
        let text = hsts.value.header_text();
        let value = if text == HSTS_DEFAULT {
            static_value(HSTS_DEFAULT)
        } else {
            owned_value(text)
        }
        .map_err(|p| err(SecurityHeader::StrictTransportSecurity, p))?;
        self.managed.push(header::STRICT_TRANSPORT_SECURITY);
        if !self.enforce {
            return Ok((None, false));
        }
        let entry = entry(header::STRICT_TRANSPORT_SECURITY, value, hsts.insert);
        if hsts.value.only_over_https {
            Ok((Some(entry), hsts.value.trust_x_forwarded_proto))
        } else {
            self.always.push(entry);
            Ok((None, false))
        }
    }

    /// CSP, as configured in enforce mode and always report-only in observe-only mode.
    fn csp(&mut self, config: &SecurityHeadersConfig) -> Result<(), ConfigError> {
        let csp = &config.content_security_policy;
        if !csp.is_on() {
            return Ok(());
        }
        let bad = |p| err(SecurityHeader::ContentSecurityPolicy, p);
        check_csp(&csp.value.policy).map_err(bad)?;
        let value = cow_value(csp.value.policy.clone()).map_err(bad)?;
        let name_in_enforce = if csp.value.report_only {
            header::CONTENT_SECURITY_POLICY_REPORT_ONLY
        } else {
            header::CONTENT_SECURITY_POLICY
        };
        let sent = if self.enforce {
            name_in_enforce.clone()
        } else {
            header::CONTENT_SECURITY_POLICY_REPORT_ONLY
        };
        self.managed.push(name_in_enforce);
        self.always.push(entry(sent, value, csp.insert));
        Ok(())
    }

    /// A header without a report-only form: sent in enforce mode only.
    fn value(&mut self, name: HeaderName, value: HeaderValue, insert: Insert) {
        if insert != Insert::LeaveAlone {
            self.managed.push(name.clone());
            if self.enforce {
                self.always.push(entry(name, value, insert));
            }
        }
    }

    /// A header with fixed text and no report-only form.
    fn fixed(&mut self, name: HeaderName, text: &'static str, insert: Insert) {
        self.value(name, HeaderValue::from_static(text), insert);
    }

    /// A header with a report-only form, which observe-only mode sends instead.
    fn reportable(
        &mut self,
        name: HeaderName,
        report_only: HeaderName,
        text: &'static str,
        insert: Insert,
    ) {
        if insert != Insert::LeaveAlone {
            let sent = if self.enforce {
                name.clone()
            } else {
                report_only
            };
            self.managed.push(name);
            self.always
                .push(entry(sent, HeaderValue::from_static(text), insert));
        }
    }
}

/// Parses the removal list, refusing framing headers and headers the policy sets.
fn removal_list(
    names: &[Cow<'static, str>],
    managed: &[HeaderName],
) -> Result<Vec<HeaderName>, ConfigError> {
    let key = || format!("{PREFIX}.remove");
    let mut remove: Vec<HeaderName> = Vec::with_capacity(names.len());
    for raw in names {
        let name = HeaderName::from_bytes(raw.trim().as_bytes())
            .map_err(|_| ConfigError::new(key(), format!("{raw:?} is not a valid header name")))?;
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            return Err(ConfigError::new(
                key(),
                format!("{name} frames the response body and must not be removed"),
            ));
        }
        if managed.contains(&name) {
            return Err(ConfigError::new(
                key(),
                format!(
                    "{name} is also set by this policy; to replace the handler's value use insert = \"override\" instead of removing it"
                ),
            ));
        }
        if !remove.contains(&name) {
            remove.push(name);
        }
    }
    Ok(remove)
}

fn entry(name: HeaderName, value: HeaderValue, insert: Insert) -> Entry {
    Entry {
        name,
        value,
        overwrite: insert == Insert::Override,
    }
}

fn err(header: SecurityHeader, problem: impl Into<Cow<'static, str>>) -> ConfigError {
    ConfigError::new(format!("{PREFIX}.{}", header.key()), problem)
}

/// A header value that points at static text: cloning it per response costs nothing.
fn static_value(text: &'static str) -> Result<HeaderValue, String> {
    HeaderValue::from_maybe_shared(Bytes::from_static(text.as_bytes()))
        .map_err(|e| format!("not a valid header value: {e}"))
}

/// A header value for text built at run time: cloning it costs a reference-count increment.
fn owned_value(text: String) -> Result<HeaderValue, String> {
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .map_err(|e| format!("not a valid header value: {e}"))
}

fn cow_value(text: Cow<'static, str>) -> Result<HeaderValue, String> {
    match text {
        Cow::Borrowed(text) => static_value(text),
        Cow::Owned(text) => owned_value(text),
    }
}

/// Whether the last `X-Forwarded-Proto` element says `https`: the last element of the last
/// header line, which the nearest proxy set or appended. Anything else (absent, empty, `http`,
/// not ASCII) is "not HTTPS". Never allocates.
pub(crate) fn forwarded_proto_is_https(headers: &HeaderMap) -> bool {
    let Some(line) = headers.get_all(X_FORWARDED_PROTO).iter().next_back() else {
        return false;
    };
    let last = line
        .as_bytes()
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or_default();
    last.trim_ascii().eq_ignore_ascii_case(b"https")
}
