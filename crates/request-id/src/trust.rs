//! Whose request ids to believe: a trust policy and the CIDR ranges of trusted peers.

use http::Extensions;
pub use palisade_core::Cidr;
use palisade_core::{PeerTrust, TrustedPeers};

/// Whose incoming request ids are kept (when valid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum TrustPolicy {
    /// Keep every valid incoming id (the default). Validation already keeps hostile bytes out of
    /// headers and logs; what remains is that a client can choose its own id, which is what
    /// correlation across services needs.
    #[default]
    Always,
    /// Never keep an incoming id: every request gets a fresh one. For edge servers whose clients
    /// have no business choosing ids.
    Never,
    /// Keep valid ids only from peers whose address (the TCP peer, from axum's
    /// `ConnectInfo<SocketAddr>`) is in the configured CIDR ranges, such as the load balancer or
    /// the service mesh sidecar. Requests without `ConnectInfo<SocketAddr>` (the server was not
    /// started with `into_make_service_with_connect_info::<SocketAddr>()`) are untrusted.
    TrustedPeers,
}

/// The compiled trust policy of a layer.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    Always,
    Never,
    Peers(TrustedPeers),
}

impl Trust {
    /// Whether an incoming id on a request with these extensions may be kept.
    pub(crate) fn allows(&self, extensions: &Extensions) -> Peer {
        match self {
            Self::Always => Peer::Trusted,
            Self::Never => Peer::Untrusted,
            Self::Peers(peers) => match peers.check(extensions) {
                PeerTrust::Trusted => Peer::Trusted,
                PeerTrust::Untrusted => Peer::Untrusted,
                PeerTrust::Unknown => Peer::Unknown,
            },
        }
    }
}

/// The trust decision about the peer of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Trusted,
    Untrusted,
    /// The policy needs the peer address and the request has none: untrusted.
    Unknown,
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;

    use super::*;

    #[test]
    fn trust_needs_connect_info() {
        let trust = Trust::Peers(TrustedPeers::new(vec![Cidr::parse("127.0.0.0/8").unwrap()]));
        let mut ext = Extensions::new();
        assert_eq!(trust.allows(&ext), Peer::Unknown);
        ext.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert_eq!(trust.allows(&ext), Peer::Trusted);
        ext.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4000))));
        assert_eq!(trust.allows(&ext), Peer::Untrusted);
        assert_eq!(Trust::Always.allows(&ext), Peer::Trusted);
        assert_eq!(Trust::Never.allows(&ext), Peer::Untrusted);
    }
}
