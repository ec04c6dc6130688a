//! [`Backpressure`]: validated configuration plus metric handles, created once, that puts a
//! bounded queue in front of each connection.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use futures_util::{Sink, Stream, StreamExt};
use palisade_core::ConfigError;

use crate::{
    config::BackpressureConfig,
    receiver::Receiver,
    sender::{Core, Sender, Shared},
    writer::Writer,
};

/// Bounded send queues for WebSocket connections, all with one configuration.
///
/// Create it once (it validates the configuration and registers the metric handles) and use it
/// for every connection; clones share everything.
///
/// - [`split`](Self::split) an axum [`WebSocket`] into a [`Sender`] and a [`Receiver`], with the
///   writer task spawned;
/// - [`channel`](Self::channel) or [`wrap`](Self::wrap) any `Sink<Message>` (and `Stream`),
///   running the [`Writer`] yourself: tests, custom transports, one task per connection;
/// - [`configure`](Self::configure) a `WebSocketUpgrade` so axum's own write buffer is small and
///   the queue is what bounds memory.
#[derive(Debug, Clone)]
pub struct Backpressure {
    core: Arc<Core>,
}

impl Backpressure {
    /// A builder starting from the defaults.
    pub fn builder() -> crate::BackpressureBuilder {
        crate::BackpressureBuilder::from(BackpressureConfig::default())
    }

    /// Validates `config` and registers the metric handles.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see [`BackpressureConfig::validate`]).
    pub fn from_config(config: BackpressureConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            core: Arc::new(Core::new(config)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BackpressureConfig {
        &self.core.config
    }

    /// A bounded queue in front of `sink`: the producer handle and the writer, which the caller
    /// runs (`tokio::spawn(writer.run())`, or inside the connection's task).
    pub fn channel<S>(&self, sink: S) -> (Sender, Writer<S>)
    where
        S: Sink<Message> + Unpin,
        S::Error: std::fmt::Display,
    {
        let shared = Shared::new(self.core.clone());
        (Sender::new(shared.clone()), Writer::new(shared, sink))
    }

    /// [`channel`](Self::channel) plus a [`Receiver`] over `stream`, tied to the same queue.
    pub fn wrap<S, St, E>(&self, sink: S, stream: St) -> (Sender, Receiver<St>, Writer<S>)
    where
        S: Sink<Message> + Unpin,
        S::Error: std::fmt::Display,
        St: Stream<Item = Result<Message, E>> + Unpin,
    {
        let shared = Shared::new(self.core.clone());
        (
            Sender::new(shared.clone()),
            Receiver::new(stream, shared.clone()),
            Writer::new(shared, sink),
        )
    }

    /// Splits an upgraded axum socket into a bounded [`Sender`] and a [`Receiver`], and spawns the
    /// writer on the current Tokio runtime. The writer ends when the connection closes
    /// ([`Sender::closed`] tells why) or, once drained, when every sender is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (axum handlers always run inside one).
    pub fn split(&self, socket: WebSocket) -> (Sender, Receiver) {
        let (sink, stream) = socket.split();
        let (sender, receiver, writer) = self.wrap(sink, stream);
        tokio::spawn(writer.run());
        (sender, receiver)
    }

    /// Applies `socket_write_buffer_size` to axum's upgrade, so tungstenite's own buffer stays
    /// small (axum's default is 128 KiB per connection) and the bounded queue is what holds
    /// pending messages. tungstenite's buffer then holds at most that much plus one frame: the
    /// writer waits for it to flush before handing over the next message.
    pub fn configure<F>(&self, upgrade: WebSocketUpgrade<F>) -> WebSocketUpgrade<F> {
        upgrade.write_buffer_size(self.core.config.socket_write_buffer_size)
    }
}
