//! [`ResponseFuture`]: the inner service's future, or a ready refusal (core's [`AdmitFuture`]).

use std::{fmt, sync::Arc};

use http::Response;
use palisade_core::{AdmitFuture, NoGuard, OnBodyEnd, Refusal, ResponseBody};

use crate::guard::{self, Guard};

/// The response future of [`RequestGuard`](crate::RequestGuard): the inner service's future, or
/// the answer to a refused request. A passed request holds nothing until its body ends.
pub type ResponseFuture<F, B> = AdmitFuture<F, NoGuard, Refused, B>;

/// A refused request on its way to a response, built only when the future is polled, so the
/// pass-through future stays small.
pub struct Refused {
    pub(crate) guard: Arc<Guard>,
    pub(crate) refusal: guard::Refusal,
}

impl Refusal for Refused {
    fn response<B, G: OnBodyEnd>(self) -> Response<ResponseBody<B, G>> {
        self.guard.response(self.refusal)
    }
}

impl fmt::Debug for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("refusal", &self.refusal)
            .finish_non_exhaustive()
    }
}
