//! Scan targets (`10.0.0.1`, `10.0.0.0/24`, `2001:db8::5`, `fd00::/120`) and the asset
//! scope that every scan must stay inside.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpAddrRange, IpNet, Ipv4AddrRange, Ipv6AddrRange};

/// Targets of one job: addresses and networks, expanded lazily, minus exclusions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetSet {
    nets: Vec<IpNet>,
    exclude: Vec<IpNet>,
}

/// A target that could not be parsed or is not allowed; names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an address or CIDR.
    #[error("invalid target `{value}`: {reason}")]
    Invalid {
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Outside the configured assets.
    #[error("target `{value}` is outside the asset scope ({scope}); add it to [[assets]] in the config to scan it")]
    OutOfScope {
        /// The value given.
        value: String,
        /// The scope, for the message.
        scope: String,
    },
    /// Inside a range the scope excludes.
    #[error("target `{value}` is excluded by scope.exclude ({range})")]
    Excluded {
        /// The value given.
        value: String,
        /// The exclusion that covers it.
        range: String,
    },
    /// More addresses than the cap allows.
    #[error("targets cover {count} addresses, more than the cap of {cap} (scope.max_targets); pass --allow-large to scan them anyway")]
    TooLarge {
        /// Addresses requested.
        count: u128,
        /// The cap.
        cap: u128,
    },
}

/// Parse one target: an address or a CIDR network.
pub fn parse_net(value: &str) -> Result<IpNet, TargetError> {
    let text = value.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    match text.parse::<IpNet>() {
        Ok(net) => {
            if net.trunc() != net {
                // `10.0.0.7/24` is almost always a typo for a host or for `10.0.0.0/24`;
                // guessing either could scan the wrong thing.
                return Err(TargetError::Invalid {
                    value: value.to_string(),
                    reason: format!("host bits are set; did you mean `{}`?", net.trunc()),
                });
            }
            Ok(net)
        }
        Err(_) => {
            let reason = match text.split_once('/') {
                Some((addr, _)) if addr.parse::<IpAddr>().is_err() => {
                    format!("`{addr}` is not an IPv4 or IPv6 address")
                }
                Some((_, len)) => format!("`/{len}` is not a valid prefix length"),
                None => "not an IPv4/IPv6 address or CIDR network".to_string(),
            };
            Err(TargetError::Invalid {
                value: value.to_string(),
                reason,
            })
        }
    }
}

fn net_size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

impl TargetSet {
    /// Parse a list of targets.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Self, TargetError> {
        let nets = values
            .iter()
            .map(|v| parse_net(v.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_nets(nets))
    }

    /// From networks (duplicates and nested networks are merged).
    pub fn from_nets(nets: Vec<IpNet>) -> Self {
        Self {
            nets: IpNet::aggregate(&nets),
            exclude: Vec::new(),
        }
    }

    /// The same set without the addresses in `exclude`.
    pub fn excluding(mut self, exclude: &[IpNet]) -> Self {
        self.exclude = IpNet::aggregate(&exclude.to_vec());
        self
    }

    /// From single addresses.
    pub fn from_ips(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        Self::from_nets(ips.into_iter().map(IpNet::from).collect())
    }

    /// The networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Number of addresses (before exclusions: an upper bound, used for caps).
    pub fn len(&self) -> u128 {
        self.nets.iter().map(net_size).fold(0u128, u128::saturating_add)
    }

    /// True if there is no address.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Every address, network and broadcast addresses included (on the internet a
    /// `.0` or `.255` inside a larger allocation is an ordinary host).
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + Clone + '_ {
        self.nets
            .iter()
            .flat_map(|net| match net {
                IpNet::V4(n) => IpAddrRange::V4(Ipv4AddrRange::new(n.network(), n.broadcast())),
                IpNet::V6(n) => IpAddrRange::V6(Ipv6AddrRange::new(n.network(), n.broadcast())),
            })
            .filter(|ip| !self.exclude.iter().any(|x| x.contains(ip)))
    }

    /// Whether an address is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip)) && !self.exclude.iter().any(|x| x.contains(&ip))
    }
}

impl fmt::Display for TargetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if net.prefix_len() == net.max_prefix_len() {
                write!(f, "{}", net.addr())?;
            } else {
                write!(f, "{net}")?;
            }
        }
        Ok(())
    }
}

/// The asset scope: the only addresses portwatch will ever send a probe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    assets: TargetSet,
    exclude: Vec<IpNet>,
    max_targets: u128,
}

impl Scope {
    /// A scope of these asset networks, with a cap on addresses per job.
    pub fn new(assets: Vec<IpNet>, max_targets: u128) -> Self {
        Self {
            assets: TargetSet::from_nets(assets),
            exclude: Vec::new(),
            max_targets,
        }
    }

    /// The same scope with networks that must never be probed, whatever the assets
    /// say (a partner's range inside ours, a fragile device).
    pub fn with_exclusions(mut self, exclude: Vec<IpNet>) -> Self {
        self.assets = self.assets.excluding(&exclude);
        self.exclude = exclude;
        self
    }

    /// The assets.
    pub fn assets(&self) -> &TargetSet {
        &self.assets
    }

    /// The networks never probed, whatever the assets say.
    pub fn exclusions(&self) -> &[IpNet] {
        &self.exclude
    }

    /// The per-job address cap.
    pub fn max_targets(&self) -> u128 {
        self.max_targets
    }

    /// Whether one address may be probed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.assets.contains(ip)
    }

    /// Check requested targets: every address inside the assets, and no more
    /// addresses than the cap unless `allow_large`. Never expands beyond what was
    /// asked: the result is exactly the requested targets.
    pub fn check(&self, requested: &[String], allow_large: bool) -> Result<TargetSet, TargetError> {
        let mut nets = Vec::with_capacity(requested.len());
        for value in requested {
            let net = parse_net(value)?;
            if let Some(range) = self.exclude.iter().find(|x| x.contains(&net)) {
                return Err(TargetError::Excluded {
                    value: value.clone(),
                    range: range.to_string(),
                });
            }
            let inside = self.assets.nets.iter().any(|a| a.contains(&net))
                || (net_size(&net) <= 65_536
                    && TargetSet::from_nets(vec![net]).iter().all(|ip| self.allows(ip)));
            if !inside {
                return Err(TargetError::OutOfScope {
                    value: value.clone(),
                    scope: self.assets.to_string(),
                });
            }
            nets.push(net);
        }
        let set = TargetSet::from_nets(nets).excluding(&self.exclude);
        if !allow_large && set.len() > self.max_targets {
            return Err(TargetError::TooLarge {
                count: set.len(),
                cap: self.max_targets,
            });
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new(
            vec![
                "127.0.0.0/24".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ],
            300,
        )
    }

    #[test]
    fn parses_addresses_and_networks_and_expands_all_addresses() {
        let set = TargetSet::parse(&["127.0.0.8/30", "127.0.0.1", "::1", "127.0.0.9"]).expect("parse");
        assert_eq!(set.len(), 6);
        let ips: Vec<String> = set.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(
            ips,
            [
                "127.0.0.1",
                "127.0.0.8",
                "127.0.0.9",
                "127.0.0.10",
                "127.0.0.11",
                "::1"
            ]
        );
        assert_eq!(set.to_string(), "127.0.0.1,127.0.0.8/30,::1");
    }

    #[test]
    fn bad_targets_name_the_value() {
        let err = parse_net("10.0.0.300/24").expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid target `10.0.0.300/24`: `10.0.0.300` is not an IPv4 or IPv6 address"
        );
        assert!(parse_net("10.0.0.0/33")
            .expect_err("len")
            .to_string()
            .contains("`/33`"));
        assert!(parse_net("10.0.0.7/24")
            .expect_err("host bits")
            .to_string()
            .contains("10.0.0.0/24"));
        assert!(parse_net("example.com").is_err());
    }

    #[test]
    fn scope_refuses_outside_and_large() {
        let scope = scope();
        assert!(scope.check(&["127.0.0.5".into()], false).is_ok());
        assert!(scope.check(&["127.0.0.128/25".into()], false).is_ok());
        let err = scope.check(&["127.0.1.1".into()], false).expect_err("outside");
        assert!(
            err.to_string()
                .starts_with("target `127.0.1.1` is outside the asset scope"),
            "{err}"
        );
        let err = scope
            .check(&["127.0.0.0/23".into()], false)
            .expect_err("straddles");
        assert!(matches!(err, TargetError::OutOfScope { .. }));
        let wide = Scope::new(vec!["10.0.0.0/8".parse().expect("net")], 300);
        assert!(matches!(
            wide.check(&["10.0.0.0/16".into()], false),
            Err(TargetError::TooLarge {
                count: 65536,
                cap: 300
            })
        ));
        assert_eq!(
            wide.check(&["10.0.0.0/16".into()], true).expect("allowed").len(),
            65536
        );
        assert!(!scope.allows("8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn exclusions_are_never_targets() {
        let scope = scope().with_exclusions(vec!["127.0.0.4/31".parse().expect("net")]);
        assert!(!scope.allows("127.0.0.5".parse().expect("ip")));
        assert!(scope.allows("127.0.0.6".parse().expect("ip")));
        let set = scope.check(&["127.0.0.0/29".into()], false).expect("in scope");
        let ips: Vec<String> = set.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(
            ips,
            [
                "127.0.0.0",
                "127.0.0.1",
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.6",
                "127.0.0.7"
            ]
        );
        assert!(!scope.assets().iter().any(|ip| ip.to_string() == "127.0.0.4"));
        let err = scope.check(&["127.0.0.5".into()], false).expect_err("excluded");
        assert_eq!(
            err.to_string(),
            "target `127.0.0.5` is excluded by scope.exclude (127.0.0.4/31)"
        );
    }
}
