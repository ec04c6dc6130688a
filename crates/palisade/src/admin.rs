//! [`AdminTokenLayer`]: operators' routes on a shared port, behind a bearer token.
//!
//! The operations listener ([`Stack::ops`](crate::Stack::ops)) is where admin routes belong: the
//! public port never reaches them. When they must share the public port, this layer asks for
//! `Authorization: Bearer <token>`, the token from `PALISADE_ADMIN_TOKEN`, compared in constant
//! time. Without a token the routes are off (`404`), and the server says so once in its log:
//! an unset variable never leaves the routes open.
//!
//! ```
//! use axum::{Router, routing::post};
//! use palisade::AdminTokenLayer;
//!
//! let admin = Router::new()
//!     .route("/admin/reset", post(|| async { "reset" }))
//!     .route_layer(AdminTokenLayer::from_env());
//! # let _: Router = admin;
//! ```

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use palisade_core::{
    AdmitFuture, EventLimiter, NoGuard, OnBodyEnd, Refusal, Rejection, RequestId, ResponseBody,
    SECURITY_TARGET,
};
use tower::{Layer, Service};

/// The environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "PALISADE_ADMIN_TOKEN";

/// The shortest token accepted: shorter ones are guessable, and are treated as no token.
const MIN_TOKEN_LEN: usize = 16;

/// Admits a request only with `Authorization: Bearer <token>`; see the [module docs](self).
///
/// | answer | when |
/// |---|---|
/// | `401` + `WWW-Authenticate: Bearer`, reason `admin_unauthorized` | a missing or wrong token |
/// | `404`, reason `admin_disabled` | no token configured (or one shorter than 16 bytes) |
#[derive(Clone)]
pub struct AdminTokenLayer {
    shared: Arc<Shared>,
}

struct Shared {
    /// `None`: the routes are off.
    token: Option<Box<[u8]>>,
    unauthorized: Rejection,
    disabled: Rejection,
    /// At most ten refusal events a second are written.
    events: EventLimiter,
}

impl fmt::Debug for AdminTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.debug_struct("AdminTokenLayer")
            .field("enabled", &self.shared.token.is_some())
            .finish()
    }
}

impl AdminTokenLayer {
    /// The token from `PALISADE_ADMIN_TOKEN`; unset, empty or shorter than 16 bytes turns the
    /// routes off, with one log line saying so.
    pub fn from_env() -> Self {
        Self::new(std::env::var(ADMIN_TOKEN_ENV).ok())
    }

    /// The layer for `token`; `None` (or a token shorter than 16 bytes) turns the routes off,
    /// with one log line saying so.
    ///
    /// # Panics
    ///
    /// Never: the rejections' statuses and reasons are constants.
    pub fn new(token: Option<String>) -> Self {
        let token = token
            .map(|t| t.trim().as_bytes().to_vec().into_boxed_slice())
            .filter(|t| t.len() >= MIN_TOKEN_LEN);
        if token.is_none() {
            tracing::warn!(
                "admin routes are disabled: set {ADMIN_TOKEN_ENV} to a token of at least \
                 {MIN_TOKEN_LEN} bytes, or serve them on the operations listener"
            );
        }
        let unauthorized = Rejection::builder(StatusCode::UNAUTHORIZED, "admin_unauthorized")
            .detail("This route needs Authorization: Bearer with the admin token.")
            .build()
            .expect("a constant rejection");
        let disabled = Rejection::builder(StatusCode::NOT_FOUND, "admin_disabled")
            .detail("Admin routes are disabled on this server.")
            .build()
            .expect("a constant rejection");
        Self {
            shared: Arc::new(Shared {
                token,
                unauthorized,
                disabled,
                events: EventLimiter::default(),
            }),
        }
    }

    /// Whether a token is configured (the routes are on).
    pub fn is_enabled(&self) -> bool {
        self.shared.token.is_some()
    }
}

impl<S> Layer<S> for AdminTokenLayer {
    type Service = AdminToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdminToken {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`AdminTokenLayer`].
#[derive(Clone)]
pub struct AdminToken<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for AdminToken<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> AdminToken<S> {
    palisade_core::inner_service_accessors!();
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Unauthorized,
    Disabled,
}

/// A refused admin request: answered with its prepared problem response.
pub struct AdminRefusal {
    shared: Arc<Shared>,
    why: Refused,
}

impl fmt::Debug for AdminRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminRefusal")
            .field("why", &self.why)
            .finish_non_exhaustive()
    }
}

impl Refusal for AdminRefusal {
    fn response<B, G: OnBodyEnd>(self) -> Response<ResponseBody<B, G>> {
        match self.why {
            Refused::Disabled => self.shared.disabled.response(),
            Refused::Unauthorized => {
                let mut response = self.shared.unauthorized.response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
        }
    }
}

/// The response future of [`AdminToken`].
pub type ResponseFuture<F, B> = AdmitFuture<F, NoGuard, AdminRefusal, B>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AdminToken<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody, NoGuard>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let refused = match &self.shared.token {
            None => Some(Refused::Disabled),
            Some(token) => {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| bearer(value.as_bytes()));
                match presented {
                    Some(presented) if constant_time_eq(presented, token) => None,
                    _ => Some(Refused::Unauthorized),
                }
            }
        };
        match refused {
            None => AdmitFuture::admitted(self.inner.call(request), NoGuard),
            Some(why) => {
                if let Some(suppressed) = self.shared.events.admit() {
                    tracing::warn!(
                        target: SECURITY_TARGET,
                        event = "admin_refused",
                        request_id = request.extensions().get::<RequestId>().map(RequestId::as_str),
                        reason = if why == Refused::Disabled { "disabled" } else { "unauthorized" },
                        path = %request.uri().path().escape_debug().to_string().chars().take(128).collect::<String>(),
                        suppressed,
                        "admin request refused"
                    );
                }
                AdmitFuture::refused(AdminRefusal {
                    shared: Arc::clone(&self.shared),
                    why,
                })
            }
        }
    }
}

/// The credentials of `Authorization: Bearer <credentials>` (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Equality whose time does not depend on where the first difference is, so a client cannot
/// find the token byte by byte from response times. (The length is not secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_are_read_case_insensitively_and_trimmed() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn only_equal_tokens_compare_equal() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn short_or_missing_tokens_turn_the_routes_off() {
        assert!(!AdminTokenLayer::new(None).is_enabled());
        assert!(!AdminTokenLayer::new(Some("short".into())).is_enabled());
        assert!(AdminTokenLayer::new(Some("a-long-enough-token".into())).is_enabled());
        assert!(
            !format!(
                "{:?}",
                AdminTokenLayer::new(Some("a-long-enough-token".into()))
            )
            .contains("long-enough")
        );
    }
}
