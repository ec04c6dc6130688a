//! [`ResponseFuture`]: the inner service's future with its permit, or the limiter's 503.

use std::{fmt, sync::Arc};

use http::Response;
use palisade_core::{AdmitFuture, OnBodyEnd, Refusal, ResponseBody};

use crate::limiter::{Limiter, Permit};

/// The response future of [`ConcurrencyLimit`](crate::ConcurrencyLimit): the inner future, whose
/// body holds the [`Permit`] until it ends, or the limiter's `503` when it refused.
pub type ResponseFuture<F, B> = AdmitFuture<F, Permit, AtLimit, B>;

/// A request refused at the limit: answered with the limiter's prepared `503` (built only when
/// the future is polled).
pub struct AtLimit(pub(crate) Arc<Limiter>);

impl Refusal for AtLimit {
    fn response<B, G: OnBodyEnd>(self) -> Response<ResponseBody<B, G>> {
        self.0.rejection().response()
    }
}

impl fmt::Debug for AtLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AtLimit")
    }
}
