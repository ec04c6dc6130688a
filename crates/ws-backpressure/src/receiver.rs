//! [`Receiver`]: the read half of a connection, tied to its queue's lifecycle.

use std::{fmt, pin::pin, sync::Arc};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{Stream, StreamExt, stream::SplitStream};

use crate::{queue::CloseReason, sender::Shared};

/// The read half of a connection. [`recv`](Self::recv) yields the client's messages and ends
/// (`None`) when the client goes away or when the server closes the connection, a slow-client
/// disconnect included, so a handler loop `while let Some(msg) = rx.recv().await` ends then too.
///
/// Reading also tells the queue when the client left (close frame, end of stream, read error), so
/// the writer stops at once instead of waiting for a write to fail.
pub struct Receiver<St = SplitStream<WebSocket>> {
    stream: St,
    shared: Arc<Shared>,
    done: bool,
}

impl<St> fmt::Debug for Receiver<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<St, E> Receiver<St>
where
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    pub(crate) fn new(stream: St, shared: Arc<Shared>) -> Self {
        Self {
            stream,
            shared,
            done: false,
        }
    }

    /// The next message from the client: `None` once the connection is closing or closed. A read
    /// error is returned once, then `None`. A `Close` from the client is returned, then `None`.
    pub async fn recv(&mut self) -> Option<Result<Message, E>> {
        if self.done {
            return None;
        }
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            if !self.shared.is_open() {
                self.done = true;
                return None;
            }
            tokio::select! {
                item = self.stream.next() => {
                    let left = match &item {
                        None | Some(Ok(Message::Close(_))) => Some(CloseReason::ClientClosed),
                        Some(Err(_)) => Some(CloseReason::Error),
                        Some(Ok(_)) => None,
                    };
                    if let Some(reason) = left {
                        self.shared.close(reason, None);
                        self.done = true;
                    }
                    return item;
                }
                // The queue may have started closing: re-check.
                () = &mut changed => {}
            }
        }
    }

    /// The underlying stream.
    pub fn into_inner(self) -> St {
        self.stream
    }
}
