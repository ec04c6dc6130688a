//! TLS metrics: handshakes by outcome and reason (a fixed set), their duration, reloads, and
//! when the certificates expire.

use std::time::{Duration, SystemTime};

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

/// Handshakes, by `outcome` (`ok`, `failed`) and `reason`: `ok`, `timeout`,
/// `no_client_certificate`, `unknown_ca`, `expired`, `san_not_allowed`, `bad_certificate`,
/// `protocol` (no shared version or cipher, not TLS at all), `closed` (the client left).
pub const HANDSHAKES: &str = "palisade_tls_handshakes_total";
/// The time from accept to the end of a handshake that succeeded.
pub const HANDSHAKE_DURATION: &str = "palisade_tls_handshake_duration_seconds";
/// When a certificate expires, as a Unix timestamp, by `cert`: `server`, `client_ca` (the CA
/// bundle's earliest). Alert on `palisade_tls_certificate_expiry_seconds - time()`.
pub const CERTIFICATE_EXPIRY: &str = "palisade_tls_certificate_expiry_seconds";
/// Reloads of the certificate, key and client CA files, by `outcome` (`ok`, `error`: the old
/// ones are kept).
pub const RELOADS: &str = "palisade_tls_reloads_total";

pub(crate) fn describe() {
    describe_counter!(
        HANDSHAKES,
        Unit::Count,
        "TLS handshakes, by outcome and reason."
    );
    describe_histogram!(
        HANDSHAKE_DURATION,
        Unit::Seconds,
        "Time from accept to the end of a successful TLS handshake."
    );
    describe_gauge!(
        CERTIFICATE_EXPIRY,
        Unit::Seconds,
        "When a served or trusted certificate expires (Unix time)."
    );
    describe_counter!(
        RELOADS,
        Unit::Count,
        "Reloads of the TLS files, by outcome (on error the old ones are kept)."
    );
}

pub(crate) fn handshake(reason: &'static str, elapsed: Duration) {
    let outcome = if reason == "ok" { "ok" } else { "failed" };
    counter!(HANDSHAKES, "outcome" => outcome, "reason" => reason).increment(1);
    if reason == "ok" {
        histogram!(HANDSHAKE_DURATION).record(elapsed.as_secs_f64());
    }
}

pub(crate) fn reload(ok: bool) {
    counter!(RELOADS, "outcome" => if ok { "ok" } else { "error" }).increment(1);
}

pub(crate) fn expiry(cert: &'static str, at: SystemTime) {
    #[allow(clippy::cast_precision_loss)]
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64);
    gauge!(CERTIFICATE_EXPIRY, "cert" => cert).set(secs);
}
