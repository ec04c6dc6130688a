//! [`ReplayBody`]: a request body that can be sent again, or is sent once.

use std::{
    fmt,
    future::poll_fn,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// The request body the retry layer gives the inner service.
///
/// A body can only be read once, so a request with a body can be retried only if the body was
/// kept. Before the first attempt of a retryable request, the layer reads the body into memory
/// up to `max_replay_body` bytes (64 KiB by default): a body that ends within the limit is
/// *replayable* and every attempt sends a copy (a reference count, no copy of the bytes). A
/// larger body, or one that fails while being read, is sent once as it streams (the bytes read
/// so far first, then the rest) and the request is not retried: gRPC's rule that a call
/// outgrowing its replay buffer is committed. Requests that may not be retried (a `POST`
/// without `Idempotency-Key`) are never read ahead.
///
/// The inner service therefore takes `Request<ReplayBody<B>>` where the caller sends
/// `Request<B>`; with hyper's client that is `Client::builder(..).build_http::<ReplayBody<B>>()`.
#[pin_project]
pub struct ReplayBody<B: Body> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
enum Kind<B: Body> {
    /// The whole body, in memory: cloned for each attempt.
    Replayable {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// The caller's body, untouched.
    Direct(#[pin] B),
    /// Read partly (over the limit) or until it failed; sent once.
    Partial {
        prefix: Option<Bytes>,
        error: Option<B::Error>,
        rest: Option<Pin<Box<B>>>,
    },
}

impl<B: Body> ReplayBody<B> {
    /// The caller's body, passed through untouched and sent once.
    pub fn direct(body: B) -> Self {
        Self {
            kind: Kind::Direct(body),
        }
    }

    /// A body held in memory, which every attempt can send.
    pub fn replayable(data: Bytes) -> Self {
        Self {
            kind: Kind::Replayable {
                data: (!data.is_empty()).then_some(data),
                trailers: None,
            },
        }
    }

    /// Whether the body can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Replayable { .. })
    }

    /// A copy for another attempt, if the body is replayable.
    pub(crate) fn replay(&self) -> Option<Self> {
        match &self.kind {
            Kind::Replayable { data, trailers } => Some(Self {
                kind: Kind::Replayable {
                    data: data.clone(),
                    trailers: trailers.clone(),
                },
            }),
            _ => None,
        }
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes>,
{
    /// Reads `body` into memory if it ends within `limit` bytes; otherwise keeps what was read
    /// in front of the rest, to be sent once.
    pub(crate) async fn buffer(body: B, limit: usize) -> Self {
        if body.is_end_stream() {
            return Self::replayable(Bytes::new());
        }
        if usize::try_from(body.size_hint().lower()).map_or(true, |lower| lower > limit) {
            // Known to be too large: do not hold it up at all.
            return Self::direct(body);
        }
        let mut body = Box::pin(body);
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0usize;
        let mut trailers: Option<HeaderMap> = None;
        loop {
            match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        len += data.len();
                        chunks.push(data);
                        if len > limit {
                            return Self::partial(concat(chunks), None, Some(body));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            trailers.get_or_insert_with(HeaderMap::new).extend(t);
                        }
                    }
                },
                Some(Err(error)) => return Self::partial(concat(chunks), Some(error), None),
            }
        }
        let data = concat(chunks);
        Self {
            kind: Kind::Replayable {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    fn partial(prefix: Bytes, error: Option<B::Error>, rest: Option<Pin<Box<B>>>) -> Self {
        Self {
            kind: Kind::Partial {
                prefix: (!prefix.is_empty()).then_some(prefix),
                error,
                rest,
            },
        }
    }
}

/// One `Bytes` from the chunks: free for a single chunk, one copy of at most the limit else.
fn concat(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Replayable { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Direct(body) => body.poll_frame(cx),
            KindProj::Partial {
                prefix,
                error,
                rest,
            } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                if let Some(error) = error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                match rest {
                    Some(rest) => rest.as_mut().poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Replayable { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Direct(body) => body.is_end_stream(),
            Kind::Partial {
                prefix,
                error,
                rest,
            } => {
                prefix.is_none() && error.is_none() && rest.as_ref().is_none_or(Body::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        let len = |data: &Option<Bytes>| data.as_ref().map_or(0, |d| d.len() as u64);
        match &self.kind {
            Kind::Replayable { data, .. } => SizeHint::with_exact(len(data)),
            Kind::Direct(body) => body.size_hint(),
            Kind::Partial { prefix, rest, .. } => {
                let rest = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + len(prefix));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + len(prefix));
                }
                hint
            }
        }
    }
}

impl<B: Body> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Replayable { .. } => "replayable",
            Kind::Direct(_) => "direct",
            Kind::Partial { .. } => "partial",
        };
        f.debug_tuple("ReplayBody").field(&kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body_util::{BodyExt, Full};

    use super::*;

    /// A streaming body of chunks with no size hint, possibly failing.
    struct Chunks(VecDeque<Result<&'static [u8], &'static str>>);

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
                    .map(|c| c.map(|b| Frame::data(Bytes::from_static(b)))),
            )
        }
    }

    fn chunks(items: &[Result<&'static [u8], &'static str>]) -> Chunks {
        Chunks(items.iter().copied().collect())
    }

    async fn collect<B: Body<Data = Bytes>>(body: ReplayBody<B>) -> Result<Bytes, B::Error> {
        body.collect()
            .await
            .map(http_body_util::Collected::to_bytes)
    }

    #[tokio::test]
    async fn small_bodies_are_replayable() {
        let body = ReplayBody::buffer(Full::new(Bytes::from_static(b"hello")), 16).await;
        assert!(body.is_replayable());
        let copy = body.replay().unwrap();
        assert_eq!(collect(body).await.unwrap(), "hello");
        assert_eq!(collect(copy).await.unwrap(), "hello");
        let body = ReplayBody::buffer(chunks(&[Ok(b"ab"), Ok(b"cd"), Ok(b"e")]), 5).await;
        assert!(body.is_replayable(), "exactly at the limit");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(collect(body.replay().unwrap()).await.unwrap(), "abcde");
    }

    #[tokio::test]
    async fn empty_bodies_are_replayable_without_reading() {
        let body = ReplayBody::buffer(http_body_util::Empty::<Bytes>::new(), 0).await;
        assert!(body.is_replayable());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_sent_once_whole() {
        let body = ReplayBody::buffer(Full::new(Bytes::from(vec![7u8; 100])), 99).await;
        assert!(!body.is_replayable(), "known too large: not read");
        assert!(body.replay().is_none());
        assert_eq!(collect(body).await.unwrap().len(), 100);
        let body = ReplayBody::buffer(chunks(&[Ok(b"ab"), Ok(b"cd"), Ok(b"ef")]), 3).await;
        assert!(!body.is_replayable(), "found too large while reading");
        assert!(!body.is_end_stream());
        assert_eq!(collect(body).await.unwrap(), "abcdef");
    }

    #[tokio::test]
    async fn a_failing_body_is_sent_once_with_its_error() {
        let body = ReplayBody::buffer(chunks(&[Ok(b"ab"), Err("reset")]), 100).await;
        assert!(!body.is_replayable());
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        assert_eq!(body.frame().await.unwrap().unwrap_err(), "reset");
        assert!(body.frame().await.is_none());
    }
}
