//! [`ResponseFuture`]: the inner future (running with its class as the task's current priority)
//! with its in-flight guard, or the shedder's 503 naming the class.

use std::{fmt, sync::Arc};

use http::Response;
use palisade_core::{AdmitFuture, OnBodyEnd, Priority, Refusal, ResponseBody};
use tokio::task::futures::TaskLocalFuture;

use crate::{layer::Shared, service::InFlight};

/// The response future of [`LoadShed`](crate::LoadShed): the inner future, whose body holds the
/// [`InFlight`] guard until it ends, or the `503` of a shed request.
pub type ResponseFuture<F, B> = AdmitFuture<TaskLocalFuture<Priority, F>, InFlight, Shed, B>;

/// A shed request: answered with the prepared `503` of its class (built only when the future is
/// polled).
pub struct Shed {
    pub(crate) shared: Arc<Shared>,
    pub(crate) priority: Priority,
}

impl Refusal for Shed {
    fn response<B, G: OnBodyEnd>(self) -> Response<ResponseBody<B, G>> {
        // Classes below CriticalPlus are the only ones ever shed.
        self.shared.rejections[(self.priority as usize).min(2)].response()
    }
}

impl fmt::Debug for Shed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shed")
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}
