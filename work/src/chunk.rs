//! Chunks: a pass split into pieces any node of its zone can take.
//!
//! A pass of a task over a zone is targets × ports; a chunk is a slice of it sized
//! to take about `[schedule] chunk_target` at one node's rate, so that a node never
//! holds the zone's work for long: a high-risk chunk waits at most one chunk behind
//! a full sweep, a dead node loses at most one chunk, and the nodes of a zone share
//! a pass chunk by chunk. A chunk's targets travel as CIDR networks, at most
//! [`Sizing::max_entries`] of them, so a chunk's order has a bounded size however
//! scattered its addresses (a zone whose live hosts are every other address).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use portwatch_events::PortSet;

/// How big chunks are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// Probes per second of one node (`[scan] rate`).
    pub rate: f64,
    /// How long a chunk should take at that rate (`[schedule] chunk_target`).
    pub target: Duration,
    /// Most networks in one chunk's targets (bounds an order's size).
    pub max_entries: usize,
}

/// Most networks in one chunk: an order stays under ~200 KB even of IPv6 /128s,
/// far below a broker's default message limit (1 MB).
pub const MAX_ENTRIES: usize = 4096;

impl Sizing {
    /// Probes one chunk should hold (at least one).
    pub fn probes(&self) -> u64 {
        (self.rate * self.target.as_secs_f64()).max(1.0) as u64
    }
}

/// One chunk of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its addresses, as networks (aggregated).
    pub targets: Vec<IpNet>,
    /// How many addresses.
    pub addresses: u64,
    /// The ports probed on each.
    pub ports: PortSet,
}

impl Chunk {
    /// Probes it sends.
    pub fn probes(&self) -> u64 {
        self.addresses * u64::from(self.ports.len())
    }
}

/// `ports` cut into consecutive slices of at most `n` ports.
fn port_slices(ports: &PortSet, n: u32) -> Vec<PortSet> {
    let n = n.max(1);
    let mut slices = Vec::new();
    let mut current: Vec<(u16, u16)> = Vec::new();
    let mut room = n;
    for &(lo, hi) in ports.ranges() {
        let mut lo = u32::from(lo);
        let hi = u32::from(hi);
        while lo <= hi {
            let take = (hi - lo + 1).min(room);
            // Ports are u16: lo + take - 1 <= hi <= 65535.
            current.push((lo as u16, (lo + take - 1) as u16));
            lo += take;
            room -= take;
            if room == 0 {
                slices.push(PortSet::from_ranges(std::mem::take(&mut current)));
                room = n;
            }
        }
    }
    if !current.is_empty() {
        slices.push(PortSet::from_ranges(current));
    }
    slices
}

/// The networks of `ips`, aggregated.
fn nets(ips: &[IpAddr]) -> Vec<IpNet> {
    IpNet::aggregate(&ips.iter().map(|ip| IpNet::from(*ip)).collect::<Vec<_>>())
}

/// Cut `ips` into chunks of at most `hosts` addresses and `max_entries` networks.
fn host_chunks(ips: &[IpAddr], hosts: usize, max_entries: usize, ports: &PortSet, out: &mut Vec<Chunk>) {
    for group in ips.chunks(hosts.max(1)) {
        let targets = nets(group);
        if targets.len() > max_entries.max(1) && group.len() > 1 {
            // Scattered addresses: halve until the order is small enough.
            host_chunks(group, group.len().div_ceil(2), max_entries, ports, out);
            continue;
        }
        out.push(Chunk {
            targets,
            addresses: group.len() as u64,
            ports: ports.clone(),
        });
    }
}

/// Split a pass over `ips` (in the order given; duplicates are the caller's) ×
/// `ports` into chunks of about `sizing`. Addresses are grouped when a host's ports
/// fit in a chunk; a host whose ports do not (every port at a low rate) gets
/// chunks of port slices.
pub fn split(ips: &[IpAddr], ports: &PortSet, sizing: &Sizing) -> Vec<Chunk> {
    let per_host = u64::from(ports.len());
    if ips.is_empty() || per_host == 0 {
        return Vec::new();
    }
    let budget = sizing.probes();
    let mut out = Vec::new();
    if per_host <= budget {
        let hosts = usize::try_from(budget / per_host).unwrap_or(usize::MAX);
        host_chunks(ips, hosts, sizing.max_entries, ports, &mut out);
    } else {
        let slices = port_slices(ports, u32::try_from(budget).unwrap_or(u32::MAX));
        for ip in ips {
            for slice in &slices {
                out.push(Chunk {
                    targets: vec![IpNet::from(*ip)],
                    addresses: 1,
                    ports: slice.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn sizing(rate: f64, secs: u64) -> Sizing {
        Sizing {
            rate,
            target: Duration::from_secs(secs),
            max_entries: MAX_ENTRIES,
        }
    }

    fn slash16() -> Vec<IpAddr> {
        (0..=u16::MAX)
            .map(|i| IpAddr::from([10, 20, (i >> 8) as u8, i as u8]))
            .collect()
    }

    /// Every (address, port) of the pass is in exactly one chunk.
    fn covered(chunks: &[Chunk]) -> (BTreeSet<(IpAddr, u16)>, u64) {
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for c in chunks {
            for net in &c.targets {
                for ip in net.hosts_inclusive() {
                    for port in c.ports.iter() {
                        assert!(seen.insert((ip, port)), "{ip}:{port} twice");
                        total += 1;
                    }
                }
            }
        }
        (seen, total)
    }

    trait Inclusive {
        fn hosts_inclusive(&self) -> Vec<IpAddr>;
    }
    impl Inclusive for IpNet {
        fn hosts_inclusive(&self) -> Vec<IpAddr> {
            let first = u32::from(match self.network() {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => unreachable!("v4 only here"),
            });
            let size = 1u32 << (32 - u32::from(self.prefix_len()));
            (first..first + size)
                .map(|n| IpAddr::from(n.to_be_bytes()))
                .collect()
        }
    }

    #[test]
    fn a_high_risk_pass_is_cut_into_thirty_second_chunks() {
        let ports = PortSet::parse("1-41").expect("ports");
        let chunks = split(&slash16(), &ports, &sizing(10_000.0, 30));
        // 300,000 probes a chunk: 7,317 hosts of 41 ports; 65,536 hosts in 9 chunks.
        assert_eq!(chunks.len(), 9);
        assert!(chunks.iter().all(|c| c.probes() <= 300_000));
        assert_eq!(chunks[0].addresses, 7_317);
        let probes: u64 = chunks.iter().map(Chunk::probes).sum();
        assert_eq!(probes, 65_536 * 41);
        let (_, total) = covered(&chunks);
        assert_eq!(total, 65_536 * 41);
        // Consecutive addresses travel as a few networks.
        assert!(
            chunks.iter().all(|c| c.targets.len() < 32),
            "{:?}",
            chunks[0].targets
        );
    }

    #[test]
    fn scattered_addresses_stay_within_the_entry_bound() {
        // Every other address of a /15 (the live half of a half-dead zone).
        let ips: Vec<IpAddr> = (0..131_072u32)
            .step_by(2)
            .map(|i| IpAddr::from((0x0A14_0000 + i).to_be_bytes()))
            .collect();
        let ports = PortSet::parse("1-41").expect("ports");
        let chunks = split(&ips, &ports, &sizing(10_000.0, 30));
        assert!(chunks.iter().all(|c| c.targets.len() <= MAX_ENTRIES));
        let addresses: u64 = chunks.iter().map(|c| c.addresses).sum();
        assert_eq!(addresses, 65_536);
        // The largest order, as JSON: well under a broker's 1 MB.
        let biggest = chunks
            .iter()
            .map(|c| {
                serde_json::to_string(&c.targets.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .expect("json")
                    .len()
            })
            .max()
            .expect("chunks");
        assert!(biggest < 100_000, "{biggest} bytes");
    }

    #[test]
    fn a_host_whose_ports_take_longer_than_a_chunk_gets_port_slices() {
        let ips = vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])];
        // 1,000 probes a second × 30 s: 30,000 ports a chunk; 65,535 ports in 3.
        let chunks = split(&ips, &PortSet::all(), &sizing(1_000.0, 30));
        assert_eq!(chunks.len(), 6);
        assert_eq!(chunks[0].ports.len(), 30_000);
        assert_eq!(chunks[2].ports.len(), 5_535);
        let (seen, total) = covered(&chunks);
        assert_eq!(total, 2 * 65_535);
        assert_eq!(seen.len() as u64, total);
        // Port lists of several ranges are cut across them.
        let slices = port_slices(&PortSet::parse("1-3,10-12,20").expect("ports"), 4);
        let text: Vec<String> = slices.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["1-3,10", "11-12,20"]);
        assert!(split(&[], &PortSet::all(), &sizing(10.0, 1)).is_empty());
    }
}
