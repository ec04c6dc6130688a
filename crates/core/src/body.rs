//! The response body every Palisade layer returns (DESIGN.md decisions 4 and 5).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

use crate::guard::{BodyEnd, NoGuard, OnBodyEnd};

/// A response body that is either the inner service's body, passed through untouched, or a small
/// fixed body (a rejection), optionally holding a completion guard.
///
/// - Pass-through adds no boxing and no allocation: the inner body is stored inline.
/// - The guard `G` runs exactly once: when the body yields its last frame or reports end of
///   stream ([`BodyEnd::Completed`]), when it yields an error ([`BodyEnd::Errored`]), or when it is
///   dropped before either ([`BodyEnd::Dropped`]). A body that is dropped while reporting end of
///   stream (hyper stops polling a body whose length is known) counts as completed.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use palisade_core::{NoGuard, ResponseBody};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner: ResponseBody<Full<Bytes>> = ResponseBody::new(Full::new(Bytes::from("ok")));
/// assert_eq!(inner.collect().await.unwrap().to_bytes(), "ok");
///
/// let fixed = ResponseBody::<Full<Bytes>, NoGuard>::fixed(Bytes::from_static(b"{}"));
/// assert_eq!(fixed.collect().await.unwrap().to_bytes(), "{}");
/// # }
/// ```
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct ResponseBody<B, G: OnBodyEnd = NoGuard> {
    #[pin]
    kind: Kind<B>,
    guard: Option<G>,
    /// The inner body was already at end of stream when the guard was attached. hyper never polls
    /// such a body (204, HEAD, empty), so dropping it is its completion, not an abort.
    empty_at_start: bool,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<B> {
    Inner {
        #[pin]
        body: B,
    },
    Fixed {
        data: Option<Bytes>,
    },
}

impl<B, G: OnBodyEnd> ResponseBody<B, G> {
    /// Passes `body` through, with no guard.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
            guard: None,
            empty_at_start: false,
        }
    }

    /// Passes `body` through and runs `guard` once when it ends.
    pub fn with_guard(body: B, guard: G) -> Self
    where
        B: Body,
    {
        let empty_at_start = body.is_end_stream();
        Self {
            kind: Kind::Inner { body },
            guard: Some(guard),
            empty_at_start,
        }
    }

    /// A fixed body of `data` (a rejection), with no guard. An empty `data` is an empty body.
    pub fn fixed(data: Bytes) -> Self {
        let data = if data.is_empty() { None } else { Some(data) };
        Self {
            kind: Kind::Fixed { data },
            guard: None,
            empty_at_start: false,
        }
    }

    /// An empty body, with no guard.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Fixed { data: None },
            guard: None,
            empty_at_start: false,
        }
    }

    /// Whether this body passes an inner body through (as opposed to a fixed body).
    pub fn is_pass_through(&self) -> bool {
        matches!(self.kind, Kind::Inner { .. })
    }
}

fn finish<G: OnBodyEnd>(guard: &mut Option<G>, end: BodyEnd) {
    if let Some(guard) = guard.take() {
        guard.on_body_end(end);
    }
}

impl<B, G> Body for ResponseBody<B, G>
where
    B: Body<Data = Bytes>,
    G: OnBodyEnd,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let poll = match this.kind.as_mut().project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Fixed { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(guard)) = (&poll, this.guard.as_mut())
            && let Some(data) = frame.data_ref()
        {
            guard.on_data(data.len());
        }
        match &poll {
            Poll::Ready(None) => finish(this.guard, BodyEnd::Completed),
            Poll::Ready(Some(Err(_))) => finish(this.guard, BodyEnd::Errored),
            // The last frame: hyper may never poll again once the body says it is done.
            Poll::Ready(Some(Ok(_))) if this.kind.as_ref().is_end_stream() => {
                finish(this.guard, BodyEnd::Completed);
            }
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Fixed { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B: Body> Kind<B> {
    fn is_end_stream(&self) -> bool {
        match self {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Fixed { data } => data.is_none(),
        }
    }
}

#[pinned_drop]
impl<B, G: OnBodyEnd> PinnedDrop for ResponseBody<B, G> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        let end = if *this.empty_at_start {
            BodyEnd::Completed
        } else {
            BodyEnd::Dropped
        };
        finish(this.guard, end);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use http_body_util::{BodyExt, Empty, Full};

    use super::*;

    /// Records every end a guard reports.
    #[derive(Clone, Default)]
    struct Ends(Arc<Mutex<Vec<BodyEnd>>>);

    impl Ends {
        fn guard(&self) -> impl OnBodyEnd + use<> {
            let ends = self.0.clone();
            move |end| ends.lock().unwrap().push(end)
        }
        fn seen(&self) -> Vec<BodyEnd> {
            self.0.lock().unwrap().clone()
        }
    }

    /// A body that yields the given chunks or errors, one per poll.
    struct Chunks(std::collections::VecDeque<Result<&'static str, &'static str>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|r| r.map(|s| Frame::data(Bytes::from_static(s.as_bytes())))),
            )
        }
    }

    fn chunks(items: Vec<Result<&'static str, &'static str>>) -> Chunks {
        Chunks(items.into())
    }

    #[tokio::test]
    async fn guard_runs_once_on_completion() {
        let ends = Ends::default();
        let body = ResponseBody::with_guard(chunks(vec![Ok("a"), Ok("b")]), ends.guard());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ab");
        assert_eq!(ends.seen(), vec![BodyEnd::Completed]);
    }

    #[tokio::test]
    async fn guard_runs_at_the_last_frame_when_the_length_is_known() {
        let ends = Ends::default();
        let mut body = ResponseBody::with_guard(Full::new(Bytes::from("x")), ends.guard());
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "x");
        // hyper stops here: the body reports end of stream and is never polled again.
        assert!(body.is_end_stream());
        assert_eq!(ends.seen(), vec![BodyEnd::Completed]);
        drop(body);
        assert_eq!(ends.seen(), vec![BodyEnd::Completed]);
    }

    /// Counts the data bytes it is shown, and reports them with the end.
    struct Counted(Arc<Mutex<Vec<(BodyEnd, usize)>>>, usize);

    impl OnBodyEnd for Counted {
        fn on_body_end(self, end: BodyEnd) {
            self.0.lock().unwrap().push((end, self.1));
        }
        fn on_data(&mut self, len: usize) {
            self.1 += len;
        }
    }

    #[tokio::test]
    async fn the_guard_sees_every_data_byte_before_the_end() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body =
            ResponseBody::with_guard(chunks(vec![Ok("abc"), Ok("de")]), Counted(seen.clone(), 0));
        body.collect().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![(BodyEnd::Completed, 5)]);

        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut body = ResponseBody::with_guard(
            chunks(vec![Ok("abc"), Err("boom")]),
            Counted(seen.clone(), 0),
        );
        while let Some(Ok(_)) = body.frame().await {}
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(BodyEnd::Errored, 3)],
            "what was sent before the error"
        );
    }

    #[tokio::test]
    async fn guard_runs_once_on_error() {
        let ends = Ends::default();
        let mut body =
            ResponseBody::with_guard(chunks(vec![Ok("a"), Err("boom"), Ok("c")]), ends.guard());
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(body.frame().await.unwrap().unwrap_err(), "boom");
        let _ = body.frame().await;
        drop(body);
        assert_eq!(ends.seen(), vec![BodyEnd::Errored]);
    }

    #[tokio::test]
    async fn guard_runs_once_on_drop_mid_stream() {
        let ends = Ends::default();
        let mut body = ResponseBody::with_guard(chunks(vec![Ok("a"), Ok("b")]), ends.guard());
        assert!(body.frame().await.unwrap().is_ok());
        assert!(ends.seen().is_empty(), "still streaming");
        drop(body);
        assert_eq!(ends.seen(), vec![BodyEnd::Dropped]);
    }

    #[test]
    fn guard_runs_on_drop_before_any_poll() {
        let ends = Ends::default();
        drop(ResponseBody::with_guard(
            chunks(vec![Ok("a")]),
            ends.guard(),
        ));
        assert_eq!(ends.seen(), vec![BodyEnd::Dropped]);
    }

    #[test]
    fn an_empty_body_dropped_unpolled_completed() {
        // hyper never polls a body that is empty from the start (204, HEAD).
        let ends = Ends::default();
        drop(ResponseBody::with_guard(
            Empty::<Bytes>::new(),
            ends.guard(),
        ));
        assert_eq!(ends.seen(), vec![BodyEnd::Completed]);
    }

    #[tokio::test]
    async fn fixed_bodies_have_an_exact_size() {
        let body = ResponseBody::<Empty<Bytes>>::fixed(Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(body.size_hint().exact(), Some(7));
        assert!(!body.is_end_stream());
        assert!(!body.is_pass_through());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{\"a\":1}");
        let empty = ResponseBody::<Empty<Bytes>>::fixed(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
        assert!(ResponseBody::<Empty<Bytes>>::empty().is_end_stream());
    }

    #[test]
    fn pass_through_keeps_the_inner_size_hint() {
        let body: ResponseBody<Full<Bytes>> = ResponseBody::new(Full::new(Bytes::from("12345")));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(body.is_pass_through());
        let _: Result<(), Infallible> = Ok(());
    }

    #[test]
    fn pass_through_adds_no_indirection() {
        // The inner body is stored inline: the wrapper is the body plus a small fixed overhead.
        let inner = std::mem::size_of::<Full<Bytes>>();
        let outer = std::mem::size_of::<ResponseBody<Full<Bytes>>>();
        assert!(
            outer <= inner + 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Bytes>(),
            "{outer} vs {inner}"
        );
    }
}
