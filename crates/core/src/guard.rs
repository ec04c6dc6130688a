//! Completion guards: work that must happen exactly once when a response body ends.

/// How a response body ended. Passed to the completion guard exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyEnd {
    /// The body produced its last frame (or reported end of stream).
    Completed,
    /// The inner body returned an error.
    Errored,
    /// The body was dropped before it finished, usually because the client went away.
    Dropped,
}

impl BodyEnd {
    /// A short, stable name for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Errored => "errored",
            Self::Dropped => "dropped",
        }
    }
}

/// Work to run exactly once when a [`ResponseBody`](crate::ResponseBody) ends.
///
/// Implemented for every `FnOnce(BodyEnd)` closure and for [`NoGuard`]. Layers usually implement it
/// on a small permit type (a slot to release, a call to record) so that the pass-through path
/// carries no boxed closure.
pub trait OnBodyEnd {
    /// Called once, with how the body ended.
    fn on_body_end(self, end: BodyEnd);

    /// Called with the length of each data frame the body yields before it ends. The default
    /// does nothing, and compiles to nothing; an access log counts the bytes sent here.
    #[inline]
    fn on_data(&mut self, _len: usize) {}
}

impl<F: FnOnce(BodyEnd)> OnBodyEnd for F {
    fn on_body_end(self, end: BodyEnd) {
        self(end);
    }
}

/// The guard of a body that needs none. Zero-sized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoGuard;

impl OnBodyEnd for NoGuard {
    fn on_body_end(self, _end: BodyEnd) {}
}
