//! [`Hub`]: fan-out of messages to many connections, each behind its own bounded queue.
//!
//! Publishing is a `try_send` per member: it never waits, so a stalled client costs the others
//! nothing but one refused (or coalesced) push per message, and its memory is bounded by its own
//! queue. Payloads are shared, not copied: a `Message` holds `Bytes`/`Utf8Bytes`, and each member
//! gets a reference-counted clone.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    response::Response,
    routing::{MethodRouter, get},
};
use futures_util::StreamExt;
use palisade_core::ConfigError;
use tokio::time::Instant;

use crate::{
    backpressure::Backpressure,
    config::BackpressureConfig,
    queue::{CloseReason, SendOutcome},
    sender::Sender,
};

/// Broadcasts messages to every member connection, each with its own bounded send queue; one
/// stalled client never delays the others or grows their memory. Clients join and leave freely.
/// Cheap to clone (an `Arc`); clones are the same hub.
///
/// ```no_run
/// use axum::Router;
/// use palisade_ws_backpressure::{BackpressureConfig, Hub};
///
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::from_config(BackpressureConfig::default())?;
/// let app: Router = Router::new().route("/ws", hub.route());
///
/// let publisher = hub.clone();
/// tokio::spawn(async move {
///     let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
///     loop {
///         tick.tick().await;
///         publisher.publish("tick");
///     }
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    backpressure: Backpressure,
    members: RwLock<HashMap<u64, Sender>>,
    next_id: AtomicU64,
}

/// How a [`Hub::publish`] went, member by member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Members whose queue took the message within its limits.
    pub queued: usize,
    /// Members whose queue took the message but is backpressured.
    pub backpressured: usize,
    /// Members whose overflow policy refused the message.
    pub dropped: usize,
    /// Members already closing.
    pub closed: usize,
}

impl PublishReport {
    /// Members that got the message queued.
    pub const fn delivered(&self) -> usize {
        self.queued + self.backpressured
    }

    fn count(&mut self, outcome: SendOutcome) {
        match outcome {
            SendOutcome::Queued => self.queued += 1,
            SendOutcome::Backpressured => self.backpressured += 1,
            SendOutcome::Dropped(_) => self.dropped += 1,
            SendOutcome::Closed => self.closed += 1,
        }
    }
}

impl Hub {
    /// A hub whose members get queues configured by `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see [`BackpressureConfig::validate`]).
    pub fn from_config(config: BackpressureConfig) -> Result<Self, ConfigError> {
        Ok(Self::with_backpressure(Backpressure::from_config(config)?))
    }

    /// A hub using `backpressure`'s configuration and metrics.
    pub fn with_backpressure(backpressure: Backpressure) -> Self {
        Self {
            inner: Arc::new(Inner {
                backpressure,
                members: RwLock::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// The queues' configuration and metrics.
    pub fn backpressure(&self) -> &Backpressure {
        &self.inner.backpressure
    }

    /// Queues `message` for every member, without waiting (a `try_send` each).
    pub fn publish(&self, message: impl Into<Message>) -> PublishReport {
        self.fan_out(&message.into(), None)
    }

    /// Queues `message` for every member under coalesce `key` (see
    /// [`Sender::try_send_keyed`]): with [`OverflowPolicy::Coalesce`](crate::OverflowPolicy),
    /// a backpressured member keeps only the latest message per key.
    pub fn publish_keyed(&self, key: u64, message: impl Into<Message>) -> PublishReport {
        self.fan_out(&message.into(), Some(key))
    }

    fn fan_out(&self, message: &Message, key: Option<u64>) -> PublishReport {
        let mut report = PublishReport::default();
        // One clock read for the whole fan-out: queue delay is measured from the publish.
        let now = Instant::now();
        let members = self.members();
        for sender in members.values() {
            // A clone shares the payload (`Bytes` reference count), it does not copy it.
            report.count(sender.push_at(message.clone(), key, now));
        }
        report
    }

    fn members(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Sender>> {
        self.inner
            .members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `sender`'s connection to the hub until the returned [`Membership`] is dropped. For
    /// handlers that run their own loop (use [`join`](Self::join) for broadcast-only endpoints).
    pub fn subscribe(&self, sender: Sender) -> Membership {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, sender);
        Membership {
            hub: self.inner.clone(),
            id,
        }
    }

    /// Serves one upgraded socket as a hub member until it closes, and returns why: the client
    /// left, was disconnected as slow, or the hub closed it. Messages from the client are read
    /// (so pings are answered and a close is noticed) and discarded.
    pub async fn join(&self, socket: WebSocket) -> CloseReason {
        self.join_with(socket, |_| {}).await
    }

    /// [`join`](Self::join), calling `on_join` with the member's [`Sender`] first: to send a
    /// welcome or the current state before any broadcast (it is queued ahead of them), or to
    /// keep a handle for messages to this client only.
    pub async fn join_with(&self, socket: WebSocket, on_join: impl FnOnce(&Sender)) -> CloseReason {
        let (sink, stream) = socket.split();
        let (sender, mut receiver, writer) = self.inner.backpressure.wrap(sink, stream);
        on_join(&sender);
        let _membership = self.subscribe(sender);
        let read = async move { while receiver.recv().await.is_some() {} };
        // Reader and writer run in this task: both end when the connection closes.
        let (reason, ()) = tokio::join!(writer.run(), read);
        reason
    }

    /// Upgrades the request (with [`Backpressure::configure`]) and [`join`](Self::join)s the hub.
    pub fn upgrade(&self, upgrade: WebSocketUpgrade) -> Response {
        let hub = self.clone();
        self.inner
            .backpressure
            .configure(upgrade)
            .on_upgrade(move |socket| async move {
                let _ = hub.join(socket).await;
            })
    }

    /// A `GET` route that upgrades to WebSocket and joins the hub:
    /// `Router::new().route("/ws", hub.route())`.
    pub fn route<S>(&self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let hub = self.clone();
        get(move |upgrade: WebSocketUpgrade| async move { hub.upgrade(upgrade) })
    }

    /// Members now.
    pub fn connections(&self) -> usize {
        self.members().len()
    }

    /// Closes every member with `frame` (for example 1001 *Going Away* at shutdown); their queued
    /// data is discarded. Returns how many members this call closed.
    // By value like `Sender::close`, though each member gets a clone.
    #[allow(clippy::needless_pass_by_value)]
    pub fn close_all(&self, frame: Option<CloseFrame>) -> usize {
        self.members()
            .values()
            .filter(|sender| sender.close(frame.clone()))
            .count()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("name", &self.inner.backpressure.config().name)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// A connection's membership of a [`Hub`]; it leaves the hub when this is dropped.
#[must_use = "the connection leaves the hub when the membership is dropped"]
pub struct Membership {
    hub: Arc<Inner>,
    id: u64,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let removed = self
            .hub
            .members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
        // Drop the sender after releasing the lock: the last sender wakes the writer.
        drop(removed);
    }
}
