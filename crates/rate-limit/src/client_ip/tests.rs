//! The resolver against a table of real and hostile header shapes, and property tests: no input
//! panics, and an untrusted peer's headers never change the answer.

use super::*;
use palisade_core::Cidr;
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn trusting(ranges: &[&str], header: ForwardedHeader) -> ClientIpResolver {
    ClientIpResolver::new(
        TrustedPeers::new(
            ranges
                .iter()
                .map(|r| r.parse::<Cidr>().unwrap())
                .collect::<Vec<_>>(),
        ),
        header,
    )
}

fn headers(name: &str, lines: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(line).unwrap(),
        );
    }
    map
}

const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

/// (case, trusted ranges, header kind, peer, header lines, expected client)
type Case = (
    &'static str,
    &'static [&'static str],
    ForwardedHeader,
    &'static str,
    &'static [&'static str],
    &'static str,
);

const LB: &[&str] = &["10.0.0.0/8"];
const LB6: &[&str] = &["10.0.0.0/8", "fd00::/8"];

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Untrusted peers: headers never read.
    ("untrusted peer, spoofed xff", LB, XFF, "203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
    ("untrusted peer, spoofed forwarded", LB, FWD, "203.0.113.9", &["for=1.2.3.4"], "203.0.113.9"),
    ("nothing trusted, loopback peer", &[], XFF, "127.0.0.1", &["1.2.3.4"], "127.0.0.1"),
    ("untrusted v6 peer", LB6, XFF, "2001:db8::5", &["1.2.3.4"], "2001:db8::5"),
    ("untrusted mapped peer canonicalised", LB, XFF, "::ffff:203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
    // Trusted peer, one proxy.
    ("one proxy", LB, XFF, "10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
    ("no header from trusted peer", LB, XFF, "10.0.0.1", &[], "10.0.0.1"),
    ("mapped trusted peer", LB, XFF, "::ffff:10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
    ("spoofed left entries ignored", LB, XFF, "10.0.0.1", &["6.6.6.6, 7.7.7.7, 198.51.100.7"], "198.51.100.7"),
    ("whitespace and tabs", LB, XFF, "10.0.0.1", &["  6.6.6.6 ,\t198.51.100.7\t"], "198.51.100.7"),
    ("empty elements ignored", LB, XFF, "10.0.0.1", &["6.6.6.6,, 198.51.100.7,"], "198.51.100.7"),
    // N trusted hops.
    ("two trusted hops", LB, XFF, "10.0.0.1", &["198.51.100.7, 10.0.0.2"], "198.51.100.7"),
    ("three trusted hops", LB, XFF, "10.0.0.1", &["6.6.6.6, 198.51.100.7, 10.9.9.9, 10.0.0.2"], "198.51.100.7"),
    ("all hops trusted: leftmost", LB, XFF, "10.0.0.1", &["10.1.1.1, 10.0.0.2"], "10.1.1.1"),
    ("trusted v6 hop", LB6, XFF, "10.0.0.1", &["2001:db8::7, fd00::1"], "2001:db8::7"),
    // Multiple lines: concatenated in order, walked from the last.
    ("two lines, client in last", LB, XFF, "10.0.0.1", &["6.6.6.6", "198.51.100.7"], "198.51.100.7"),
    ("two lines, trusted hop in last", LB, XFF, "10.0.0.1", &["198.51.100.7", "10.0.0.2"], "198.51.100.7"),
    ("three lines with spoof first", LB, XFF, "10.0.0.1", &["1.1.1.1, 2.2.2.2", "198.51.100.7", "10.0.0.3, 10.0.0.2"], "198.51.100.7"),
    ("empty last line", LB, XFF, "10.0.0.1", &["198.51.100.7", ""], "198.51.100.7"),
    // Ports, brackets, IPv6.
    ("v4 with port", LB, XFF, "10.0.0.1", &["198.51.100.7:4711"], "198.51.100.7"),
    ("bare v6", LB, XFF, "10.0.0.1", &["2001:db8::7"], "2001:db8::7"),
    ("bracketed v6", LB, XFF, "10.0.0.1", &["[2001:db8::7]"], "2001:db8::7"),
    ("bracketed v6 with port", LB, XFF, "10.0.0.1", &["[2001:db8::7]:4711"], "2001:db8::7"),
    ("mapped v6 entry", LB, XFF, "10.0.0.1", &["::ffff:198.51.100.7"], "198.51.100.7"),
    ("mapped entry of a trusted proxy", LB, XFF, "10.0.0.1", &["198.51.100.7, ::ffff:10.0.0.2"], "198.51.100.7"),
    // Garbage stops the walk: the peer.
    ("garbage entry", LB, XFF, "10.0.0.1", &["not-an-ip"], "10.0.0.1"),
    ("garbage behind trusted hop", LB, XFF, "10.0.0.1", &["garbage, 10.0.0.2"], "10.0.0.1"),
    ("garbage left of client is never reached", LB, XFF, "10.0.0.1", &["garbage, 198.51.100.7"], "198.51.100.7"),
    ("unknown in xff", LB, XFF, "10.0.0.1", &["unknown"], "10.0.0.1"),
    ("zone id", LB, XFF, "10.0.0.1", &["fe80::1%eth0"], "10.0.0.1"),
    ("port out of range", LB, XFF, "10.0.0.1", &["198.51.100.7:99999"], "10.0.0.1"),
    ("empty port", LB, XFF, "10.0.0.1", &["198.51.100.7:"], "10.0.0.1"),
    ("unclosed bracket", LB, XFF, "10.0.0.1", &["[2001:db8::7"], "10.0.0.1"),
    ("bracketed v4", LB, XFF, "10.0.0.1", &["[198.51.100.7]"], "10.0.0.1"),
    ("host name", LB, XFF, "10.0.0.1", &["example.com"], "10.0.0.1"),
    ("leading zeros (octal trick)", LB, XFF, "10.0.0.1", &["010.0.0.1"], "10.0.0.1"),
    ("garbage in a later line stops", LB, XFF, "10.0.0.1", &["198.51.100.7", "%%%"], "10.0.0.1"),
    // RFC 7239 Forwarded.
    ("forwarded simple", LB, FWD, "10.0.0.1", &["for=198.51.100.7"], "198.51.100.7"),
    ("forwarded case-insensitive name", LB, FWD, "10.0.0.1", &["For=198.51.100.7;proto=https"], "198.51.100.7"),
    ("forwarded with other params", LB, FWD, "10.0.0.1", &["proto=http;for=198.51.100.7;by=10.0.0.1"], "198.51.100.7"),
    ("forwarded quoted v4", LB, FWD, "10.0.0.1", &["for=\"198.51.100.7\""], "198.51.100.7"),
    ("forwarded quoted v6 port", LB, FWD, "10.0.0.1", &["for=\"[2001:db8:cafe::17]:4711\""], "2001:db8:cafe::17"),
    ("forwarded chain", LB, FWD, "10.0.0.1", &["for=6.6.6.6, for=198.51.100.7, for=10.0.0.2"], "198.51.100.7"),
    ("forwarded two lines", LB, FWD, "10.0.0.1", &["for=6.6.6.6", "for=198.51.100.7;proto=https"], "198.51.100.7"),
    ("forwarded unknown", LB, FWD, "10.0.0.1", &["for=unknown"], "10.0.0.1"),
    ("forwarded obfuscated", LB, FWD, "10.0.0.1", &["for=_hidden, for=10.0.0.2"], "10.0.0.1"),
    ("forwarded obfuscated left of client", LB, FWD, "10.0.0.1", &["for=_hidden, for=198.51.100.7"], "198.51.100.7"),
    ("forwarded quoted comma stays inside", LB, FWD, "10.0.0.1", &["for=\"6.6.6.6,10.0.0.9\";x=1, for=198.51.100.7"], "198.51.100.7"),
    ("forwarded unterminated quote on the left", LB, FWD, "10.0.0.1", &["for=\"6.6.6.6, for=198.51.100.7"], "198.51.100.7"),
    ("forwarded unterminated quote reached", LB, FWD, "10.0.0.1", &["for=\"10.0.0.3, for=10.0.0.2"], "10.0.0.1"),
    ("forwarded element without for", LB, FWD, "10.0.0.1", &["proto=https"], "10.0.0.1"),
    ("forwarded duplicate for", LB, FWD, "10.0.0.1", &["for=1.1.1.1;for=198.51.100.7"], "10.0.0.1"),
    ("forwarded escaped quote", LB, FWD, "10.0.0.1", &["for=\"198.51\\.100.7\""], "198.51.100.7"),
    ("forwarded bad token", LB, FWD, "10.0.0.1", &["for=198.51.100.7 x"], "10.0.0.1"),
    ("forwarded bare v4 port", LB, FWD, "10.0.0.1", &["for=198.51.100.7:80"], "198.51.100.7"),
    ("forwarded ignores xff", LB, FWD, "10.0.0.1", &[], "10.0.0.1"),
    ("xff mode ignores forwarded", LB, XFF, "10.0.0.1", &[], "10.0.0.1"),
];

#[test]
fn resolution_table() {
    assert!(CASES.len() >= 40, "{}", CASES.len());
    for (case, ranges, kind, peer, lines, expected) in CASES {
        let resolver = trusting(ranges, *kind);
        let name = match kind {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        let mut map = headers(name, lines);
        // The other header is present in every case and must never be read.
        let other = if name == "forwarded" {
            "x-forwarded-for"
        } else {
            "forwarded"
        };
        map.append(
            HeaderName::from_static(other),
            http::HeaderValue::from_static("for=9.9.9.9, 9.9.9.9"),
        );
        assert_eq!(
            resolver.resolve_from(ip(peer), &map),
            ip(expected),
            "{case}"
        );
    }
}

#[test]
fn non_ascii_lines_stop_the_walk() {
    let resolver = trusting(LB, XFF);
    let mut map = HeaderMap::new();
    map.append(
        "x-forwarded-for",
        http::HeaderValue::from_static("198.51.100.7"),
    );
    map.append(
        "x-forwarded-for",
        http::HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
    );
    assert_eq!(resolver.resolve_from(ip("10.0.0.1"), &map), ip("10.0.0.1"));
}

#[test]
fn no_connect_info_means_no_address() {
    let resolver = trusting(LB, XFF);
    assert_eq!(
        resolver.resolve(&HeaderMap::new(), &Extensions::new()),
        None
    );
    let mut ext = Extensions::new();
    ext.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 1))));
    let map = headers("x-forwarded-for", &["198.51.100.7"]);
    assert_eq!(resolver.resolve(&map, &ext), Some(ip("198.51.100.7")));
}

fn header_line() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        proptest::collection::vec(
            prop_oneof![
                "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,6})?",
                "\\[?[0-9a-f:]{2,20}\\]?(:[0-9]{1,5})?",
                "(for|by|proto|For)=\"?[ -~]{0,20}\"?",
                "unknown|_hidden|[\";,=\\\\ ]{1,4}",
            ],
            0..6
        )
        .prop_map(|parts| parts.join(", ")),
    ]
}

fn peer_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        Just(ip("10.0.0.1")),
    ]
}

fn map_of(lines: &[String], name: &'static str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines {
        if let Ok(value) = http::HeaderValue::from_str(line) {
            map.append(name, value);
        }
    }
    map
}

proptest! {
    #[test]
    fn no_input_panics_and_the_answer_is_an_address_we_were_given(
        lines in proptest::collection::vec(header_line(), 0..4),
        peer in peer_strategy(),
        forwarded in any::<bool>(),
    ) {
        let (kind, name) = if forwarded { (FWD, "forwarded") } else { (XFF, "x-forwarded-for") };
        let resolver = trusting(&["10.0.0.0/8", "0.0.0.0/1"], kind);
        let map = map_of(&lines, name);
        let client = resolver.resolve_from(peer, &map);
        // Either the peer, or an address that literally occurs in the headers.
        if client != peer.to_canonical() {
            let text = lines.join(",").replace('\\', "");
            let v4 = client.to_string();
            prop_assert!(text.contains(&v4) || client.is_ipv6(), "{client} not in {text:?}");
        }
    }

    #[test]
    fn untrusted_peers_headers_never_change_the_answer(
        lines in proptest::collection::vec(header_line(), 0..4),
        octets in any::<[u8; 4]>(),
        forwarded in any::<bool>(),
    ) {
        // Anything outside 10/8 is untrusted.
        prop_assume!(octets[0] != 10);
        let peer = IpAddr::from(octets);
        let (kind, name) = if forwarded { (FWD, "forwarded") } else { (XFF, "x-forwarded-for") };
        let resolver = trusting(LB, kind);
        let map = map_of(&lines, name);
        prop_assert_eq!(resolver.resolve_from(peer, &map), peer);
    }
}
