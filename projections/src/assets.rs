//! Asset matching: which system and owner a finding belongs to.
//!
//! The most specific asset containing an address wins (a /32 filed for one database
//! beats the /16 of its data centre), so a lookup and an "everything owned by X"
//! query agree: an owner's addresses are the ranges of their assets minus the more
//! specific assets of someone else inside them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::AssetMatch;

/// One asset range and who answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Its network.
    pub net: IpNet,
    /// Owner, if known.
    pub owner: Option<String>,
    /// System, if known.
    pub system: Option<String>,
    /// Network zone (which probe nodes reach it).
    pub zone: String,
}

/// All assets, for lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assets {
    list: Vec<Asset>,
}

impl Assets {
    /// The assets of `list`.
    pub fn new(list: Vec<Asset>) -> Self {
        Self { list }
    }

    /// Every asset.
    pub fn list(&self) -> &[Asset] {
        &self.list
    }

    /// The most specific asset containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Asset> {
        self.list
            .iter()
            .filter(|a| a.net.contains(&ip))
            .max_by_key(|a| a.net.prefix_len())
    }

    /// What a finding on `ip` carries.
    pub fn matching(&self, ip: IpAddr) -> AssetMatch {
        match self.lookup(ip) {
            Some(a) => AssetMatch {
                owner: a.owner.clone(),
                system: a.system.clone(),
                zone: Some(a.zone.clone()),
            },
            None => AssetMatch::default(),
        }
    }

    /// The addresses whose most specific asset is owned by `owner`, as inclusive
    /// ranges of one family each.
    pub fn ranges_owned_by(&self, owner: &str) -> Vec<(IpAddr, IpAddr)> {
        let mut out = Vec::new();
        for asset in self.list.iter().filter(|a| a.owner.as_deref() == Some(owner)) {
            let mut ranges = vec![bounds(asset.net)];
            // Holes: more specific assets inside it that someone else owns. (Their
            // own more specific assets of `owner` are added by the outer loop.)
            for inner in &self.list {
                let more_specific = inner.net.prefix_len() > asset.net.prefix_len()
                    && asset.net.contains(&inner.net.network());
                if more_specific && inner.owner.as_deref() != Some(owner) {
                    ranges = ranges
                        .into_iter()
                        .flat_map(|r| subtract(r, bounds(inner.net)))
                        .collect();
                }
            }
            out.extend(ranges);
        }
        out.into_iter()
            .map(|(family, lo, hi)| (to_ip(family, lo), to_ip(family, hi)))
            .collect()
    }
}

/// (family, first, last) as integers.
type Range = (u8, u128, u128);

fn bounds(net: IpNet) -> Range {
    match net {
        IpNet::V4(n) => (4, u32::from(n.network()).into(), u32::from(n.broadcast()).into()),
        IpNet::V6(n) => (6, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn subtract(r: Range, hole: Range) -> Vec<Range> {
    let (family, lo, hi) = r;
    let (hfamily, hlo, hhi) = hole;
    if family != hfamily || hhi < lo || hlo > hi {
        return vec![r];
    }
    let mut out = Vec::new();
    if hlo > lo {
        out.push((family, lo, hlo - 1));
    }
    if hhi < hi {
        out.push((family, hhi + 1, hi));
    }
    out
}

fn to_ip(family: u8, n: u128) -> IpAddr {
    if family == 4 {
        IpAddr::V4((n as u32).into())
    } else {
        IpAddr::V6(n.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(net: &str, owner: &str) -> Asset {
        Asset {
            net: net.parse().expect("net"),
            owner: Some(owner.to_string()),
            system: None,
            zone: "default".into(),
        }
    }

    #[test]
    fn the_most_specific_asset_wins_in_lookups_and_in_owner_ranges() {
        let assets = Assets::new(vec![
            asset("10.0.0.0/8", "net-team"),
            asset("10.1.2.0/24", "db-team"),
            asset("10.1.2.7/32", "net-team"),
        ]);
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        assert_eq!(assets.matching(ip("10.1.2.3")).owner.as_deref(), Some("db-team"));
        assert_eq!(assets.matching(ip("10.1.2.7")).owner.as_deref(), Some("net-team"));
        assert_eq!(assets.matching(ip("10.9.9.9")).owner.as_deref(), Some("net-team"));
        assert_eq!(assets.matching(ip("192.0.2.1")), AssetMatch::default());
        assert_eq!(
            assets.ranges_owned_by("db-team"),
            [
                (ip("10.1.2.0"), ip("10.1.2.6")),
                (ip("10.1.2.8"), ip("10.1.2.255"))
            ]
        );
        let net = assets.ranges_owned_by("net-team");
        assert_eq!(
            net,
            [
                (ip("10.0.0.0"), ip("10.1.1.255")),
                (ip("10.1.3.0"), ip("10.255.255.255")),
                (ip("10.1.2.7"), ip("10.1.2.7"))
            ]
        );
        assert!(assets.ranges_owned_by("nobody").is_empty());
    }
}
