//! Metric names and handles. Handles are registered once, when a [`Backpressure`] or [`Hub`] is
//! built, and shared by every connection, so the per-message cost is a few atomic operations;
//! install the metrics recorder (exporter) first.
//!
//! Labels are bounded: `ws` is the configured name, `reason` and `mode` are fixed sets. Nothing
//! is labelled per connection: gauges are sums over all connections of one `ws` name.
//!
//! [`Backpressure`]: crate::Backpressure
//! [`Hub`]: crate::Hub

use metrics::{
    Counter, Gauge, Histogram, Unit, describe_counter, describe_gauge, describe_histogram,
};
use palisade_core::EnforcementMode;

use crate::queue::DropReason;

/// Payload bytes queued and not yet handed to the socket, over all connections, by `ws`.
pub const BUFFERED_BYTES: &str = "palisade_ws_buffered_bytes";
/// Open connections with a send queue, by `ws`.
pub const CONNECTIONS: &str = "palisade_ws_connections";
/// Connections whose queue is backpressured (above high water, not yet back to low water), by
/// `ws`.
pub const BACKPRESSURED_CONNECTIONS: &str = "palisade_ws_backpressured_connections";
/// Data messages dropped, by `ws`, `reason` (`drop_newest`, `drop_oldest`, `coalesced`,
/// `disconnected`) and `mode` (`enforce`, or `observe_only`: what observe-only mode would have
/// dropped; `disconnected` is always `enforce`).
pub const MESSAGES_DROPPED: &str = "palisade_ws_messages_dropped_total";
/// Slow clients disconnected, by `ws` and `mode` (`observe_only`: would have been disconnected).
pub const SLOW_CLIENT_DISCONNECTS: &str = "palisade_ws_slow_client_disconnects_total";
/// Slow clients detected (whatever the action: disconnect or report), by `ws`.
pub const SLOW_CLIENTS: &str = "palisade_ws_slow_clients_total";
/// Time data messages spent queued, from `try_send`/`send` until handed to the socket, by `ws`.
pub const QUEUE_DELAY_SECONDS: &str = "palisade_ws_queue_delay_seconds";

/// The metric handles of one configuration (one `ws` name).
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) buffered_bytes: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) backpressured: Gauge,
    pub(crate) slow_client_disconnects: Counter,
    pub(crate) slow_clients: Counter,
    pub(crate) queue_delay: Histogram,
    /// By [`DropReason`] in [`DropReason::ALL`] order.
    dropped: [Counter; 4],
}

impl Metrics {
    pub(crate) fn new(name: &str, mode: EnforcementMode) -> Self {
        describe();
        let name = name.to_owned();
        let mode_label = mode.label();
        let dropped = DropReason::ALL.map(|reason| {
            // Discarding queued data at close is not a policy decision: always enforced.
            let mode = if reason == DropReason::Disconnected {
                EnforcementMode::Enforce.label()
            } else {
                mode_label
            };
            metrics::counter!(MESSAGES_DROPPED, "ws" => name.clone(), "reason" => reason.as_str(), "mode" => mode)
        });
        Self {
            buffered_bytes: metrics::gauge!(BUFFERED_BYTES, "ws" => name.clone()),
            connections: metrics::gauge!(CONNECTIONS, "ws" => name.clone()),
            backpressured: metrics::gauge!(BACKPRESSURED_CONNECTIONS, "ws" => name.clone()),
            slow_client_disconnects: metrics::counter!(SLOW_CLIENT_DISCONNECTS, "ws" => name.clone(), "mode" => mode_label),
            slow_clients: metrics::counter!(SLOW_CLIENTS, "ws" => name.clone()),
            queue_delay: metrics::histogram!(QUEUE_DELAY_SECONDS, "ws" => name),
            dropped,
        }
    }

    pub(crate) fn dropped(&self, reason: DropReason, messages: u64) {
        let index = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL");
        self.dropped[index].increment(messages);
    }
}

/// A byte count as a gauge value.
// Exact below 2^53 bytes (8 PiB), far above any queue.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn gauge_bytes(bytes: usize) -> f64 {
    bytes as f64
}

fn describe() {
    describe_gauge!(
        BUFFERED_BYTES,
        Unit::Bytes,
        "WebSocket payload bytes queued and not yet handed to the socket, over all connections."
    );
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Open WebSocket connections with a bounded send queue."
    );
    describe_gauge!(
        BACKPRESSURED_CONNECTIONS,
        Unit::Count,
        "WebSocket connections whose send queue is above high water (until drained to low water)."
    );
    describe_counter!(
        MESSAGES_DROPPED,
        Unit::Count,
        "WebSocket data messages dropped by the overflow policy or discarded at close."
    );
    describe_counter!(
        SLOW_CLIENT_DISCONNECTS,
        Unit::Count,
        "WebSocket clients disconnected because their send queue stayed above high water too long."
    );
    describe_counter!(
        SLOW_CLIENTS,
        Unit::Count,
        "WebSocket clients whose send queue stayed above high water too long, whatever the action."
    );
    describe_histogram!(
        QUEUE_DELAY_SECONDS,
        Unit::Seconds,
        "Time WebSocket data messages spent in the send queue before being handed to the socket."
    );
}
