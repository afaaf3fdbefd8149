//! Canary ports: how portwatch tells a real open port from a host that answers on
//! every port.
//!
//! SYN proxies, tarpits and some CDNs or WAFs complete the handshake (or send a
//! SYN-ACK) on all 65535 ports. Scanning such a host naively yields 65535 "open"
//! findings. So every scan also probes a few random high ports per host that nobody
//! asked about; if all of them "answer open", the host is flagged as a wildcard and
//! none of its ports is reported open: they are counted as unverified until stronger
//! evidence (data exchange, service detection) confirms them.

use portwatch_events::PortSet;
use rand::Rng;

/// How many canaries each host gets.
pub const CANARIES: usize = 3;

/// The canary ports of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canaries {
    /// Ports outside the requested set, probed only to test for a wildcard host;
    /// their results never appear in a host's result.
    pub extra: Vec<u16>,
    /// The ports whose answers decide: `extra`, or when the requested set leaves no
    /// room (a full-range scan), random ports from the set itself.
    pub deciding: Vec<u16>,
}

impl Canaries {
    /// Pick canaries for a scan of `ports` (from 20000-65535, where real services
    /// are rare).
    pub fn pick(ports: &PortSet) -> Self {
        let mut rng = rand::rng();
        let mut extra = Vec::new();
        for _ in 0..200 {
            if extra.len() == CANARIES {
                break;
            }
            let p: u16 = rng.random_range(20_000..=65_535);
            if !ports.contains(p) && !extra.contains(&p) {
                extra.push(p);
            }
        }
        let deciding = if extra.len() == CANARIES {
            extra.clone()
        } else {
            extra.clear();
            let mut from_set = Vec::new();
            for _ in 0..1000 {
                if from_set.len() == CANARIES {
                    break;
                }
                let p: u16 = rng.random_range(20_000..=65_535);
                if ports.contains(p) && !from_set.contains(&p) {
                    from_set.push(p);
                }
            }
            from_set
        };
        let mut canaries = Self { extra, deciding };
        canaries.extra.sort_unstable();
        canaries.deciding.sort_unstable();
        canaries
    }

    /// Canaries for a scan of `ports`, or none when the scan must not probe ports
    /// nobody listed.
    pub fn for_scan(ports: &PortSet, enabled: bool) -> Self {
        if enabled {
            Self::pick(ports)
        } else {
            Self::none()
        }
    }

    /// The order to probe in: the requested ports plus the extra canaries, shuffled
    /// (no host sees its ports in sequence, and canaries hide among real probes).
    pub fn probe_order(&self, ports: &PortSet) -> Vec<u16> {
        use rand::seq::SliceRandom;
        let mut order: Vec<u16> = ports.iter().chain(self.extra.iter().copied()).collect();
        order.shuffle(&mut rand::rng());
        order
    }

    /// No canaries (a scan too small to carry them is never flagged).
    pub fn none() -> Self {
        Self {
            extra: Vec::new(),
            deciding: Vec::new(),
        }
    }

    /// Whether `port` is an extra canary (its result is not the caller's business).
    pub fn is_extra(&self, port: u16) -> bool {
        self.extra.binary_search(&port).is_ok()
    }

    /// A host is a wildcard when every deciding canary answered open.
    pub fn is_wildcard(&self, open_canaries: usize) -> bool {
        !self.deciding.is_empty() && open_canaries >= self.deciding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_lie_outside_the_requested_ports() {
        let ports = PortSet::parse("1-1024").expect("ports");
        let c = Canaries::pick(&ports);
        assert_eq!(c.extra.len(), CANARIES);
        assert_eq!(c.extra, c.deciding);
        assert!(c.extra.iter().all(|p| !ports.contains(*p) && *p >= 20_000));
        assert!(c.is_extra(c.extra[0]));
    }

    #[test]
    fn a_full_range_scan_decides_with_its_own_ports() {
        let c = Canaries::pick(&PortSet::all());
        assert!(c.extra.is_empty());
        assert_eq!(c.deciding.len(), CANARIES);
        assert!(c.is_wildcard(3) && !c.is_wildcard(2));
        assert!(!Canaries::none().is_wildcard(0));
    }
}
