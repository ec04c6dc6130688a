//! Who is asking: CIDR ranges and the TCP peer of a request, for layers that trust some callers
//! more than others (request ids, priority headers).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use axum::extract::ConnectInfo;
use http::Extensions;

use crate::ConfigError;

/// An IP network in CIDR notation, such as `10.0.0.0/8`, `fd00::/8` or a single address
/// (`127.0.0.1`, taken as `/32`; `::1`, taken as `/128`).
///
/// Parsing is strict and never panics: the prefix length must be plain decimal digits within the
/// address family, and host bits must be zero (`10.0.0.1/8` is refused with a hint, since it is
/// usually a typo for `10.0.0.0/8` or `10.0.0.1/32`). IPv4-mapped IPv6 ranges
/// (`::ffff:10.0.0.0/104`) are stored as their IPv4 range, and peers are compared in canonical
/// form, so a dual-stack listener that reports `::ffff:127.0.0.1` matches `127.0.0.0/8`.
///
/// ```
/// use palisade_core::Cidr;
///
/// let lan: Cidr = "192.168.0.0/16".parse().unwrap();
/// assert!(lan.contains("192.168.4.2".parse().unwrap()));
/// assert!(lan.contains("::ffff:192.168.4.2".parse().unwrap()));
/// assert!(!lan.contains("10.0.0.1".parse().unwrap()));
/// assert!("10.0.0.1/8".parse::<Cidr>().is_err());
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

const fn mask_v4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

const fn mask_v6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    }
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a single address.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (key `trusted_peers`) naming the problem: not an IP address, a prefix
    /// that is not a number or too long for the family, or host bits set.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let err = |problem: String| ConfigError::new("trusted_peers", problem);
        let shown = || {
            // Hostile or garbled configuration is quoted only in part.
            let mut s: String = text.chars().take(64).collect();
            if s.len() < text.len() {
                s.push('…');
            }
            s.escape_debug().to_string()
        };
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr_text).map_err(|_| {
            err(format!(
                "\"{}\" is not an IP address or CIDR range",
                shown()
            ))
        })?;
        let family_bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => family_bits,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(format!(
                        "\"{}\": the prefix length must be a number from 0 to {family_bits}",
                        shown()
                    )));
                }
                match p.parse::<u8>() {
                    Ok(n) if n <= family_bits => n,
                    _ => {
                        return Err(err(format!(
                            "\"{}\": the prefix length must be a number from 0 to {family_bits}",
                            shown()
                        )));
                    }
                }
            }
        };
        let (network, host_bits_set) = match addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let net = bits & mask_v4(prefix);
                (IpAddr::V4(Ipv4Addr::from(net)), net != bits)
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let net = bits & mask_v6(prefix);
                (IpAddr::V6(Ipv6Addr::from(net)), net != bits)
            }
        };
        if host_bits_set {
            return Err(err(format!(
                "\"{}\" has host bits set: did you mean {network}/{prefix}?",
                shown()
            )));
        }
        // An IPv4-mapped IPv6 range is an IPv4 range in disguise.
        if let IpAddr::V6(v6) = network
            && prefix >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Ok(Self {
                network: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(Self { network, prefix })
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is in this range. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are
    /// compared as the IPv4 address they carry.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The TCP peer of a request, from axum's `ConnectInfo<SocketAddr>` (present when the server was
/// started with `into_make_service_with_connect_info::<SocketAddr>()`). Never a forwarded header:
/// those are the client's to forge.
pub fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// What a list of trusted ranges says about the peer of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTrust {
    /// The peer is in a trusted range.
    Trusted,
    /// The peer is outside every trusted range.
    Untrusted,
    /// The request carries no peer address (no `ConnectInfo`): treat as untrusted.
    Unknown,
}

/// A list of trusted CIDR ranges.
///
/// ```
/// use palisade_core::{Cidr, PeerTrust, TrustedPeers};
///
/// let mesh = TrustedPeers::new(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]);
/// let mut extensions = http::Extensions::new();
/// assert_eq!(mesh.check(&extensions), PeerTrust::Unknown);
/// extensions.insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([10, 1, 2, 3], 4000))));
/// assert_eq!(mesh.check(&extensions), PeerTrust::Trusted);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedPeers(Box<[Cidr]>);

impl TrustedPeers {
    /// Trusts peers in `ranges`.
    pub fn new(ranges: impl Into<Box<[Cidr]>>) -> Self {
        Self(ranges.into())
    }

    /// The ranges.
    pub fn ranges(&self) -> &[Cidr] {
        &self.0
    }

    /// Whether `ip` is in a trusted range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// Whether the peer of the request with these extensions is trusted.
    pub fn check(&self, extensions: &Extensions) -> PeerTrust {
        match peer_ip(extensions) {
            Some(ip) if self.contains(ip) => PeerTrust::Trusted,
            Some(_) => PeerTrust::Untrusted,
            None => PeerTrust::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_single_addresses() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert_eq!((c.network(), c.prefix_len()), (ip("10.0.0.0"), 8));
        assert_eq!(Cidr::parse("127.0.0.1").unwrap().prefix_len(), 32);
        assert_eq!(Cidr::parse("::1").unwrap().prefix_len(), 128);
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(Cidr::parse("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn refuses_nonsense_with_config_errors() {
        for bad in [
            "",
            "/",
            "10.0.0.0/",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/ 8",
            "10.0.0.0/33",
            "10.0.0.0/0008",
            "::/129",
            "10.0.0.1/8",
            "fe80::1%eth0",
            "localhost",
            "10.0.0",
            " 10.0.0.0/8",
        ] {
            let err = Cidr::parse(bad).unwrap_err();
            assert_eq!(err.key(), "trusted_peers", "{bad:?}");
        }
        let hint = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(hint.problem().contains("10.0.0.0/8"), "{hint}");
    }

    #[test]
    fn error_messages_quote_bounded_text() {
        let long = "x".repeat(10_000);
        let err = Cidr::parse(&long).unwrap_err();
        assert!(err.problem().len() < 200, "{}", err.problem().len());
        let err = Cidr::parse("\u{1b}[31m/8").unwrap_err();
        assert!(!err.problem().contains('\u{1b}'));
    }

    #[test]
    fn containment() {
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(c.contains(ip("127.0.0.1")));
        assert!(c.contains(ip("127.255.255.255")));
        assert!(c.contains(ip("::ffff:127.0.0.1")));
        assert!(!c.contains(ip("128.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        assert!(!all.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn trusted_peers_need_connect_info() {
        let peers = TrustedPeers::new(vec![Cidr::parse("127.0.0.0/8").unwrap()]);
        let mut ext = Extensions::new();
        assert_eq!(peers.check(&ext), PeerTrust::Unknown);
        ext.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert_eq!(peers.check(&ext), PeerTrust::Trusted);
        ext.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4000))));
        assert_eq!(peers.check(&ext), PeerTrust::Untrusted);
        assert_eq!(TrustedPeers::default().check(&ext), PeerTrust::Untrusted);
    }

    fn reference_contains_v4(net: u32, prefix: u8, a: u32) -> bool {
        (0..prefix).all(|i| (net >> (31 - i)) & 1 == (a >> (31 - i)) & 1)
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            let _ = Cidr::parse(&text);
        }

        #[test]
        fn parsing_cidr_shaped_text_never_panics(text in "[0-9a-fA-F:.]{0,40}(/[0-9+-]{0,5})?") {
            if let Ok(c) = Cidr::parse(&text) {
                prop_assert_eq!(Cidr::parse(&c.to_string()).unwrap(), c);
                prop_assert!(c.contains(c.network()));
            }
        }

        #[test]
        fn v4_round_trips_and_matches_a_reference(addr in any::<u32>(), prefix in 0u8..=32, probe in any::<u32>()) {
            let net = addr & mask_v4(prefix);
            let text = format!("{}/{prefix}", Ipv4Addr::from(net));
            let c = Cidr::parse(&text).unwrap();
            prop_assert_eq!(c.to_string(), text);
            prop_assert_eq!(
                c.contains(IpAddr::V4(Ipv4Addr::from(probe))),
                reference_contains_v4(net, prefix, probe)
            );
            prop_assert!(c.contains(IpAddr::V4(Ipv4Addr::from(net))));
            if net != addr {
                let with_host_bits = format!("{}/{}", Ipv4Addr::from(addr), prefix);
                prop_assert!(Cidr::parse(&with_host_bits).is_err());
            }
        }

        #[test]
        fn v6_round_trips(addr in any::<u128>(), prefix in 0u8..=128, probe in any::<u128>()) {
            let net = addr & mask_v6(prefix);
            let c = Cidr::parse(&format!("{}/{prefix}", Ipv6Addr::from(net))).unwrap();
            prop_assert_eq!(Cidr::parse(&c.to_string()).unwrap(), c);
            let probe = Ipv6Addr::from(probe);
            if c.network().is_ipv6() && probe.to_ipv4_mapped().is_none() {
                let expected = (u128::from(probe) ^ net) & mask_v6(prefix) == 0;
                prop_assert_eq!(c.contains(IpAddr::V6(probe)), expected);
            }
        }
    }
}
