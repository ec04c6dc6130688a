//! Bounded WebSocket send queues for axum, with slow-client policies and a broadcast hub.
//!
//! A naive axum WebSocket server gives each client an unbounded channel (or awaits
//! `socket.send` from the producer): a client that stops reading grows the server's memory
//! without limit, or stalls every producer that writes to it. axum's own write buffer is
//! unbounded by default too. This crate puts a queue bounded in bytes and messages in front of
//! each socket, with the choices every server has to make made explicit:
//!
//! - **High and low water.** A queue becomes *backpressured* when it rises above
//!   `send_buffer_high_water` bytes (default 1 MiB) or `max_queued_messages` (4096), and stays so
//!   until the writer drains it to `send_buffer_low_water` (256 KiB; 1024 messages). Envoy's
//!   watermarks, where uWebSockets has one threshold.
//! - **`try_send` never waits.** It answers at once ([`SendOutcome`]): `Queued`,
//!   `Backpressured` (queued, but slow down), `Dropped` (by policy) or `Closed`.
//!   [`Sender::send`] waits while backpressured, up to `send_timeout`, for producers that can.
//! - **Overflow policies** while backpressured ([`OverflowPolicy`]): drop the newest message
//!   (default), drop the oldest, or coalesce by a caller key (keep only the latest message per
//!   key: state updates).
//! - **Slow clients.** A queue backpressured for longer than `slow_client_threshold` (60 s) is a
//!   slow client: disconnect it with close code 1008 (or 1013, or 3000-4999) and a reason, or
//!   only report it ([`SlowClientAction`]). The verdict does not need the socket to make
//!   progress: a writer blocked on a stalled socket still sees the deadline.
//! - **Control frames bypass the queue.** Ping, pong and close are never refused and are written
//!   before queued data; a close discards the queued data.
//! - **A broadcast [`Hub`]**: fan-out to many connections, each with its own queue, so one
//!   stalled client never delays the others or grows their memory. Payloads are shared
//!   (`Bytes` clones), not copied per client. Mount it with one line:
//!   `Router::new().route("/ws", hub.route())`.
//! - **Observe-only mode** (`mode = observe_only`): nothing is dropped and nobody is
//!   disconnected, but the metrics count what would have been.
//!
//! Accounting counts payload bytes of data messages that are queued and not yet handed to the
//! socket. With the default drop-newest policy a connection's count never exceeds high water plus
//! one message. [`Backpressure::configure`] (applied by [`Hub::route`]) also shrinks axum's own
//! write buffer to `socket_write_buffer_size` (16 KiB), so the queue, not tungstenite, is what
//! holds pending messages.
//!
//! # Example: the queue over any sink
//!
//! The core is generic over `futures_util::Sink<Message>`: here a sink that discards, with the
//! writer started only at the end, so the queue fills up first.
//!
//! ```
//! use axum::extract::ws::Message;
//! use palisade_ws_backpressure::{
//!     Backpressure, CloseReason, DropReason, SendOutcome,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backpressure = Backpressure::builder()
//!     .send_buffer_high_water(8)
//!     .send_buffer_low_water(4)
//!     .build()?;
//! // axum's `WebSocket` (or its split sink half) in production.
//! let (sender, writer) = backpressure.channel(futures_util::sink::drain::<Message>());
//!
//! assert_eq!(sender.try_send("hello"), SendOutcome::Queued); // 5 bytes
//! assert_eq!(sender.try_send("world"), SendOutcome::Backpressured); // 10 > 8
//! assert_eq!(
//!     sender.try_send("!"),
//!     SendOutcome::Dropped(DropReason::DropNewest)
//! );
//! // Control frames bypass the queue.
//! assert_eq!(sender.try_send(Message::Ping("p".into())), SendOutcome::Queued);
//! assert_eq!(sender.stats().buffered_bytes, 10);
//!
//! // The writer drains the queue into the sink (the ping first).
//! let writer = tokio::spawn(writer.run());
//! while sender.stats().queued_messages > 0 {
//!     tokio::task::yield_now().await;
//! }
//! assert_eq!(sender.stats().written_messages, 2);
//! // Once every sender is gone, it stops.
//! drop(sender);
//! assert_eq!(writer.await?, CloseReason::SendersDropped);
//! # Ok(()) }
//! ```
//!
//! # Example: a broadcast endpoint
//!
//! ```no_run
//! use axum::{Router, extract::ws::Message};
//! use palisade_ws_backpressure::{Backpressure, Hub};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::with_backpressure(Backpressure::builder().name("events").build()?);
//! let app: Router = Router::new().route("/ws", hub.route());
//!
//! // Anywhere: a shared payload, never copied per client, never waiting for one.
//! let report = hub.publish(Message::text(r#"{"price": 42}"#));
//! println!("{} queued, {} dropped", report.delivered(), report.dropped);
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Example: one connection, your own loop
//!
//! ```no_run
//! use axum::{extract::ws::{Message, WebSocketUpgrade}, response::Response};
//! use palisade_ws_backpressure::Backpressure;
//!
//! async fn handler(upgrade: WebSocketUpgrade, backpressure: Backpressure) -> Response {
//!     let config = backpressure.clone();
//!     config.configure(upgrade).on_upgrade(move |socket| async move {
//!         let (sender, mut receiver) = backpressure.split(socket);
//!         // The sender is cheap to clone: give one to every task producing for this client.
//!         let echo = sender.clone();
//!         while let Some(Ok(message)) = receiver.recv().await {
//!             if let Message::Text(text) = message {
//!                 // Waits while backpressured (at most `send_timeout`).
//!                 if echo.send(Message::Text(text)).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         }
//!     })
//! }
//! ```
//!
//! # Configuration
//!
//! See [`BackpressureConfig`] for every field and its default. With the `serde` feature the
//! configuration deserializes (durations in seconds).
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_ws_buffered_bytes` | gauge | `ws` (payload bytes queued, all connections) |
//! | `palisade_ws_connections` | gauge | `ws` |
//! | `palisade_ws_backpressured_connections` | gauge | `ws` |
//! | `palisade_ws_messages_dropped_total` | counter | `ws`, `reason` (`drop_newest`, `drop_oldest`, `coalesced`, `disconnected`), `mode` (`enforce`, `observe_only`) |
//! | `palisade_ws_slow_client_disconnects_total` | counter | `ws`, `mode` |
//! | `palisade_ws_slow_clients_total` | counter | `ws` (every verdict, whatever the action) |
//! | `palisade_ws_queue_delay_seconds` | histogram | `ws` (enqueue to handed to the socket) |
//!
//! `ws` is the configured `name`; nothing is labelled per connection. Metric handles are
//! registered when a [`Backpressure`] or [`Hub`] is built: install the recorder first.

mod backpressure;
mod config;
mod hub;
pub mod metrics;
mod queue;
mod receiver;
mod sender;
mod writer;

pub use backpressure::Backpressure;
pub use config::{
    BackpressureBuilder, BackpressureConfig, CLOSE_POLICY_VIOLATION, CLOSE_TRY_AGAIN_LATER,
    MAX_CLOSE_REASON_BYTES, MAX_DURATION, OverflowPolicy, SlowClientAction,
};
pub use hub::{Hub, Membership, PublishReport};
pub use queue::{CloseReason, DropReason, QueueStats, SendOutcome};
pub use receiver::Receiver;
pub use sender::{SendError, Sender};
pub use writer::Writer;

#[cfg(test)]
mod tests;
