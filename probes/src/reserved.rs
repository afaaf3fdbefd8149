//! Reserved and bogon address ranges. portwatch watches internet-facing space;
//! an asset inside one of these is almost always a mistake (a typo, a paste of an
//! internal range), so it is refused unless the operator allows reserved ranges
//! explicitly (`[scope] allow_reserved = true`, e.g. for the loopback demo or a lab).

use ipnet::IpNet;

/// (range, what it is). Sources: IANA special-purpose address registries.
pub const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" (RFC 791)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved for future use (RFC 1112)"),
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)"),
    ("64:ff9b::/96", "IPv4/IPv6 translation (RFC 6052)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("ff00::/8", "multicast (RFC 4291)"),
];

/// The first reserved range that overlaps `net`, with its description.
pub fn overlapping(net: &IpNet) -> Option<(IpNet, &'static str)> {
    RESERVED.iter().find_map(|(range, what)| {
        let range: IpNet = range.parse().ok()?;
        (range.contains(net) || net.contains(&range)).then_some((range, *what))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_finds_overlaps_both_ways() {
        for (range, _) in RESERVED {
            assert!(range.parse::<IpNet>().is_ok(), "{range}");
        }
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        assert_eq!(
            overlapping(&net("10.1.2.0/24")).map(|r| r.0),
            Some(net("10.0.0.0/8"))
        );
        assert_eq!(
            overlapping(&net("0.0.0.0/0")).map(|r| r.0),
            Some(net("0.0.0.0/8"))
        );
        assert!(overlapping(&net("127.0.0.1/32")).is_some());
        assert!(overlapping(&net("::1/128")).is_some());
        assert!(overlapping(&net("8.8.8.0/24")).is_none());
        assert!(overlapping(&net("2a00:1450::/32")).is_none());
    }
}
