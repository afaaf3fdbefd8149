//! The limits every approval and block keeps, checked where it is decided (the API)
//! and again where it takes effect (the block controller), so that a record that
//! reached the journal some other way still cannot silence the internet or lock the
//! console out.
//!
//! An approval names a network inside the assets, of at most `[approvals]
//! max_addresses` addresses, and a service other than `unknown` (which would match
//! every port detection could not name). A block covers one address inside the
//! assets, for at most `[control] max_duration`, and never a `[control] protect`
//! entry: by default the API's own port and SSH on every address of the machine
//! that applies blocks, since blocking those would cut the way to roll it back.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ApprovalRequest;
use crate::Assets;
use crate::BlockRequest;

/// Addresses an approval may name when the config does not say.
pub const DEFAULT_MAX_ADDRESSES: u128 = 256;

/// One `[control] protect` entry: a port on some addresses that no block may cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// Where.
    pub nets: Vec<IpNet>,
    /// Which port (any protocol).
    pub port: u16,
    /// The entry as written, for messages (`22`, `10.0.0.5:443`).
    pub entry: String,
}

/// Why an approval is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    /// It names more addresses than allowed.
    #[error("target `{net}`: {count} addresses, more than [approvals] max_addresses = {max}; file narrower approvals")]
    TooWide {
        /// The network.
        net: ipnet::IpNet,
        /// How many addresses it names (`2^128` for all of IPv6).
        count: String,
        /// The limit.
        max: u128,
    },
    /// It is not inside the assets.
    #[error("target `{0}`: not inside the assets ([[assets]]); only monitored addresses can be approved")]
    OutsideAssets(ipnet::IpNet),
    /// It names the service `unknown`.
    #[error("service `unknown`: it would match every port detection cannot name; name the service expected (http, ssh, ...) or leave it out")]
    UnknownService,
}

/// Why a block is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockRefusal {
    /// The request itself is out of bounds (outside the assets, too long).
    #[error("{0}")]
    OutOfBounds(String),
    /// It covers a protected port.
    #[error("{0}")]
    Protected(String),
}

/// The limits, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Most addresses one approval may name.
    pub max_addresses: u128,
    /// Longest block, in seconds.
    pub max_block_secs: u64,
    /// Ports no block may cover.
    pub protect: Vec<Protected>,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_addresses: DEFAULT_MAX_ADDRESSES,
            max_block_secs: 7 * 24 * 3600,
            protect: Vec::new(),
        }
    }
}

/// How many addresses `net` holds (saturating at `u128::MAX` for `::/0`).
pub fn addresses(net: &IpNet) -> u128 {
    let bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

fn as_u128(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

/// Whether every address of `net` lies in some asset (assets may be adjacent: the
/// union counts, not one asset alone).
pub fn inside_assets(assets: &Assets, net: &IpNet) -> bool {
    let (v6, lo) = as_u128(net.network());
    let (_, hi) = as_u128(net.broadcast());
    let mut ranges: Vec<(u128, u128)> = assets
        .list()
        .iter()
        .filter(|a| a.net.network().is_ipv6() == v6)
        .map(|a| (as_u128(a.net.network()).1, as_u128(a.net.broadcast()).1))
        .collect();
    ranges.sort_unstable();
    // Walk the sorted ranges, extending what is covered from `lo` on.
    let mut next = lo;
    for (a, b) in ranges {
        if a > next {
            break;
        }
        if b >= next {
            if b >= hi {
                return true;
            }
            next = b + 1;
        }
    }
    false
}

impl Bounds {
    /// Whether an approval keeps the limits; `Err` names the one it breaks.
    pub fn approval(&self, assets: &Assets, r: &ApprovalRequest) -> Result<(), ApprovalRefusal> {
        let n = addresses(&r.net);
        if n > self.max_addresses {
            return Err(ApprovalRefusal::TooWide {
                net: r.net,
                count: if n == u128::MAX {
                    "2^128".to_string()
                } else {
                    n.to_string()
                },
                max: self.max_addresses,
            });
        }
        if !inside_assets(assets, &r.net) {
            return Err(ApprovalRefusal::OutsideAssets(r.net));
        }
        if r.service
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("unknown"))
        {
            return Err(ApprovalRefusal::UnknownService);
        }
        Ok(())
    }

    /// Whether a block keeps the limits.
    pub fn block(&self, assets: &Assets, b: &BlockRequest) -> Result<(), BlockRefusal> {
        if assets.lookup(b.ip).is_none() {
            return Err(BlockRefusal::OutOfBounds(format!(
                "ip `{}`: not inside the assets ([[assets]]); only monitored addresses can be blocked",
                b.ip
            )));
        }
        if b.duration_secs == 0 || b.duration_secs > self.max_block_secs {
            return Err(BlockRefusal::OutOfBounds(format!(
                "duration {} s: more than zero and at most {} s ([control] max_duration)",
                b.duration_secs, self.max_block_secs
            )));
        }
        if let Some(p) = self
            .protect
            .iter()
            .find(|p| p.port == b.port && p.nets.iter().any(|n| n.contains(&b.ip)))
        {
            return Err(BlockRefusal::Protected(format!(
                "{}:{}/{} is protected by [control] protect `{}`: blocking it would cut the way to the console, the API or the machine, and with it the way to roll the block back",
                b.ip, b.port, b.proto, p.entry
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use portwatch_events::{PortSet, Proto};

    use super::*;
    use crate::Asset;

    fn assets() -> Assets {
        Assets::new(
            ["203.0.113.0/25", "203.0.113.128/25", "2001:db8::/64"]
                .iter()
                .map(|c| Asset {
                    net: c.parse().expect("net"),
                    owner: None,
                    system: None,
                    zone: "default".into(),
                })
                .collect(),
        )
    }

    fn approval(net: &str, service: Option<&str>) -> ApprovalRequest {
        ApprovalRequest {
            approval_id: "ap_1".into(),
            net: crate::approvals::parse_target(net).expect("net"),
            ports: PortSet::parse("443").expect("ports"),
            proto: Proto::Tcp,
            service: service.map(str::to_string),
            reason: "r".into(),
            owner: "o".into(),
            expires_at: Utc.timestamp_opt(1_900_000_000, 0).single().expect("ts"),
        }
    }

    fn block(ip: &str, port: u16, secs: u64) -> BlockRequest {
        BlockRequest {
            block_id: "bk_1".into(),
            ip: ip.parse().expect("ip"),
            proto: Proto::Tcp,
            port,
            episode_id: "e".into(),
            reason: "r".into(),
            duration_secs: secs,
        }
    }

    #[test]
    fn approvals_stay_small_inside_the_assets_and_name_their_service() {
        let b = Bounds::default();
        let a = assets();
        // Two adjacent /25 assets make the /24.
        assert_eq!(b.approval(&a, &approval("203.0.113.0/24", Some("https"))), Ok(()));
        assert_eq!(b.approval(&a, &approval("203.0.113.7", None)), Ok(()));
        for (net, service, named) in [
            ("0.0.0.0/0", None, "4294967296 addresses"),
            ("::/0", None, "2^128 addresses"),
            ("203.0.112.0/23", None, "512 addresses"),
            ("198.51.100.7", None, "not inside the assets"),
            ("203.0.113.0/24", Some("unknown"), "service `unknown`"),
            ("2001:db8:1::1", None, "not inside the assets"),
        ] {
            let e = b
                .approval(&a, &approval(net, service))
                .expect_err(net)
                .to_string();
            assert!(e.contains(named), "{net}: {e}");
        }
    }

    #[test]
    fn blocks_stay_inside_the_assets_and_off_protected_ports() {
        let b = Bounds {
            protect: vec![Protected {
                nets: vec!["203.0.113.5/32".parse().expect("net")],
                port: 22,
                entry: "22".into(),
            }],
            ..Bounds::default()
        };
        let a = assets();
        assert_eq!(b.block(&a, &block("203.0.113.5", 6379, 60)), Ok(()));
        assert_eq!(b.block(&a, &block("203.0.113.6", 22, 60)), Ok(()));
        let e = b.block(&a, &block("203.0.113.5", 22, 60)).expect_err("protected");
        assert!(
            matches!(&e, BlockRefusal::Protected(m) if m.contains("protect `22`")),
            "{e}"
        );
        assert!(matches!(
            b.block(&a, &block("198.51.100.7", 6379, 60)),
            Err(BlockRefusal::OutOfBounds(_))
        ));
        assert!(matches!(
            b.block(&a, &block("203.0.113.5", 6379, 8 * 24 * 3600)),
            Err(BlockRefusal::OutOfBounds(_))
        ));
    }
}
