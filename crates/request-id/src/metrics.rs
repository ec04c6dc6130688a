//! The layer's metrics, through the `metrics` facade.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_request_id_generated_total` | counter | none | requests that arrived without an id (a fresh one was generated) |
//! | `palisade_request_id_replaced_total` | counter | `reason` = `invalid` \| `untrusted`, `mode` = `enforce` \| `observe_only` | incoming ids that were replaced by a fresh id; with `mode="observe_only"`, the ids that enforce mode would replace |
//!
//! Counter handles are registered with the installed recorder at the first request a layer
//! sees (not when it is built), so install the recorder before serving.

use metrics::{Counter, Unit, counter, describe_counter};
use palisade_core::EnforcementMode;

/// Requests that arrived without a request id.
pub const GENERATED_TOTAL: &str = "palisade_request_id_generated_total";
/// Incoming request ids replaced (or, observe-only, that would be replaced), by `reason`.
pub const REPLACED_TOTAL: &str = "palisade_request_id_replaced_total";

/// Why an incoming id was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Empty, too long, outside the charset, or the header was repeated.
    Invalid,
    /// Valid, but the trust policy does not believe the peer.
    Untrusted,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Untrusted => "untrusted",
        }
    }
}

/// Registered counter handles: one atomic add per update.
#[derive(Debug)]
pub(crate) struct Metrics {
    generated: Counter,
    invalid: Counter,
    untrusted: Counter,
}

impl Metrics {
    pub(crate) fn register(mode: EnforcementMode) -> Self {
        describe();
        let mode = mode.label();
        Self {
            generated: counter!(GENERATED_TOTAL),
            invalid: counter!(REPLACED_TOTAL, "reason" => Reason::Invalid.as_str(), "mode" => mode),
            untrusted: counter!(REPLACED_TOTAL, "reason" => Reason::Untrusted.as_str(), "mode" => mode),
        }
    }

    pub(crate) fn generated(&self) {
        self.generated.increment(1);
    }

    pub(crate) fn replaced(&self, reason: Reason) {
        match reason {
            Reason::Invalid => self.invalid.increment(1),
            Reason::Untrusted => self.untrusted.increment(1),
        }
    }
}

/// Describes the layer's metrics to the installed recorder (HELP lines). Layers call it
/// themselves; it is public for exporters that want every description before the first request.
pub fn describe() {
    describe_counter!(
        GENERATED_TOTAL,
        Unit::Count,
        "Requests that arrived without a request id; a fresh id was generated."
    );
    describe_counter!(
        REPLACED_TOTAL,
        Unit::Count,
        "Incoming request ids replaced by a fresh id (observe-only mode: that would be \
         replaced), by reason: invalid (charset, length, repeated header) or untrusted (peer \
         not trusted)."
    );
}
