//! The metrics [`serve`](crate::serve) emits.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_server_connections_timed_out_total` | counter | `reason`: `header_read_timeout`, `idle_timeout` | connections closed because the client was too slow or idle too long |
//!
//! The connection limit on the listener emits its own (`palisade_connections_open`, ...).

const TIMED_OUT: &str = "palisade_server_connections_timed_out_total";

/// Describes the metrics to the installed recorder and registers every series at zero (so that
/// `rate()` works from the first scrape); called when a server starts, after the application
/// installed its exporter.
pub(crate) fn describe() {
    metrics::describe_counter!(
        TIMED_OUT,
        metrics::Unit::Count,
        "Connections closed because the client sent its request head too slowly (slowloris) or stayed idle past the keep-alive timeout."
    );
    for reason in ["header_read_timeout", "idle_timeout"] {
        metrics::counter!(TIMED_OUT, "reason" => reason).increment(0);
    }
}

pub(crate) fn connection_timed_out(reason: &'static str) {
    metrics::counter!(TIMED_OUT, "reason" => reason).increment(1);
}
