//! The guard's shared state: the compiled policy, one prepared rejection per reason, the metric
//! handles. Built once per layer; every service and future holds an `Arc` of it.

use http::{Extensions, HeaderValue, Method, Response, StatusCode, Uri, header};
use palisade_core::{
    ConfigError, EnforcementMode, EventLimiter, OnBodyEnd, Rejection, RequestId, ResponseBody,
    SECURITY_TARGET,
};

use crate::{
    config::RequestGuardConfig,
    escape::Escaped,
    metrics::Metrics,
    reason::Reason,
    target::{Finding, Policy, redirect_target},
};

#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) policy: Policy,
    pub(crate) config: RequestGuardConfig,
    mode: EnforcementMode,
    /// Indexed by [`Reason::index`].
    rejections: Box<[Rejection]>,
    metrics: Metrics,
    /// At most ten refusal events a second are written; the metric counts them all.
    events: EventLimiter,
}

/// A refusal on its way to a response: small, so the pass-through future stays small.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) finding: Finding,
    /// The `Location` of a merge-slashes redirect.
    pub(crate) location: Option<HeaderValue>,
}

impl Guard {
    pub(crate) fn new(config: RequestGuardConfig) -> Result<Self, ConfigError> {
        let policy = config.compile()?;
        let rejections = Reason::ALL
            .into_iter()
            .map(|reason| {
                Rejection::builder(reason.status(), reason.as_str())
                    .detail(reason.detail())
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let mode = config.mode;
        Ok(Self {
            policy,
            config,
            mode,
            rejections,
            // Registered (and described) now, so the recorder knows the metric before the first
            // refusal and per-request counting formats no labels.
            metrics: Metrics::new(mode),
            events: EventLimiter::default(),
        })
    }

    /// Counts and logs a refusal, once per request. `None` when observe-only mode serves the
    /// request anyway.
    #[inline(never)]
    #[cold]
    pub(crate) fn refuse(
        &self,
        finding: Finding,
        method: &Method,
        uri: &Uri,
        extensions: &Extensions,
    ) -> Option<Refusal> {
        let reason = finding.reason();
        self.metrics.rejected(reason);
        // The path only, escaped: query strings carry tokens, and this is before any redaction.
        let path = Escaped(uri.path().as_bytes());
        let method = Escaped(method.as_str().as_bytes());
        let request_id = extensions.get::<RequestId>().map(RequestId::as_str);
        let written = self.events.admit();
        if !self.mode.enforces() {
            if let Some(suppressed) = written {
                tracing::info!(
                target: SECURITY_TARGET,
                event = "request_refused_observed",
                reason = reason.as_str(),
                %method,
                %path,
                request_id,
                suppressed,
                "request would be refused (observe-only, served)"
                );
            }
            return None;
        }
        // One event per refusal, the security event operators alert on; the access log does not
        // see these requests (they never reach the router), so this line carries the request id.
        if let Some(suppressed) = written {
            tracing::info!(
                target: SECURITY_TARGET,
                event = "request_refused",
                reason = reason.as_str(),
                status = reason.status().as_u16(),
                %method,
                %path,
                request_id,
                suppressed,
                "request refused"
            );
        }
        let location = match finding {
            Finding::MergeSlashes => {
                let location =
                    redirect_target(uri.path().as_bytes(), uri.query().map(str::as_bytes));
                // The path came from a parsed `Uri`, so this does not fail; if it ever did, the
                // request is refused with 400 instead of redirected.
                HeaderValue::from_str(&location).ok()
            }
            Finding::Reject(_) => None,
        };
        Some(Refusal { finding, location })
    }

    /// The response for `refusal`.
    pub(crate) fn response<B, G: OnBodyEnd>(
        &self,
        refusal: Refusal,
    ) -> Response<ResponseBody<B, G>> {
        match (refusal.finding, refusal.location) {
            (Finding::MergeSlashes, Some(location)) => {
                let mut response = Response::new(ResponseBody::empty());
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            (finding, _) => {
                let reason = finding.reason();
                let mut response = self.rejections[reason.index()].response();
                if reason == Reason::MethodNotImplemented {
                    // RFC 9110 10.2.1: `Allow` may accompany any response; it tells the client
                    // which methods this server serves at all.
                    response
                        .headers_mut()
                        .insert(header::ALLOW, self.policy.methods.allow_header().clone());
                }
                response
            }
        }
    }
}
