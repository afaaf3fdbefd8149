//! The passes over one chunk of targets: the first pass probes everything, each
//! retransmission pass probes only what got no answer, and the chunk's bookkeeping
//! turns answers into per-host results.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::Utc;
use portwatch_events::{Evidence, OutcomeCounts, PortSet, ProbeOutcome, Timestamp};
use tokio::sync::mpsc;

use crate::canary::Canaries;
use crate::connect::{HostResult, OpenPort};

use super::{source_for, Cookie, Reply};

/// One chunk being scanned: its state and what the passes need around it.
pub(super) struct ChunkRun<'a> {
    pub(super) state: ChunkState,
    pub(super) replies: &'a mut mpsc::UnboundedReceiver<Reply>,
    pub(super) progress: &'a crate::connect::ScanProgress,
    pub(super) cookie: &'a Cookie,
}

/// Per-chunk bookkeeping: which probes got an answer, and what it was.
pub(super) struct ChunkState {
    pub(super) hosts: Vec<IpAddr>,
    pub(super) sources: Vec<IpAddr>,
    pub(super) index: HashMap<IpAddr, usize>,
    /// One bit per (host, probed port), indexed by the port's slot in `slot`: the
    /// bitmap grows with the ports actually probed, not with all 65536.
    pub(super) answered_bits: Vec<Vec<u64>>,
    /// Port number -> its slot in the probe order (`u32::MAX`: not probed).
    pub(super) slot: Arc<[u32]>,
    pub(super) open: Vec<Vec<u16>>,
    pub(super) closed: Vec<u32>,
    pub(super) unreachable: Vec<Vec<u16>>,
    pub(super) errors: Vec<Vec<u16>>,
    pub(super) started_at: Vec<Option<Timestamp>>,
    pub(super) answered: u64,
    pub(super) canaries: Arc<Canaries>,
    pub(super) canary_open: Vec<usize>,
    pub(super) forged: Vec<u32>,
}

impl ChunkState {
    pub(super) fn new(
        chunk: &[IpAddr],
        (canaries, slot): (Arc<Canaries>, Arc<[u32]>),
        source: Option<IpAddr>,
    ) -> Self {
        let hosts: Vec<IpAddr> = chunk.to_vec();
        // The configured source, or one route lookup per host (no packet is sent);
        // a host with no route gets the unspecified address and its probes fail to
        // send (not covered).
        let sources = hosts
            .iter()
            .map(|h| {
                let configured = source.filter(|s| s.is_ipv4() == h.is_ipv4());
                configured.or_else(|| source_for(*h)).unwrap_or(match h {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                })
            })
            .collect();
        let n = hosts.len();
        Self {
            index: hosts.iter().enumerate().map(|(i, h)| (*h, i)).collect(),
            sources,
            answered_bits: vec![vec![0u64; slot.iter().filter(|s| **s != u32::MAX).count().div_ceil(64)]; n],
            slot,
            open: vec![Vec::new(); n],
            closed: vec![0; n],
            unreachable: vec![Vec::new(); n],
            errors: vec![Vec::new(); n],
            started_at: vec![None; n],
            answered: 0,
            canaries,
            canary_open: vec![0; n],
            forged: vec![0; n],
            hosts,
        }
    }

    pub(super) fn mark_started(&mut self, host: usize) {
        if self.started_at[host].is_none() {
            self.started_at[host] = Some(Utc::now());
        }
    }

    pub(super) fn set_answered(&mut self, host: usize, port: u16) -> bool {
        let slot = self.slot[usize::from(port)];
        if slot == u32::MAX {
            return false; // a reply for a port this scan never probed
        }
        let word = &mut self.answered_bits[host][slot as usize / 64];
        let bit = 1u64 << (slot % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.answered += 1;
        true
    }

    pub(super) fn is_answered(&self, host: usize, port: u16) -> bool {
        let slot = self.slot[usize::from(port)];
        slot != u32::MAX && self.answered_bits[host][slot as usize / 64] & (1u64 << (slot % 64)) != 0
    }

    pub(super) fn record(&mut self, reply: Reply) {
        let Some(&host) = self.index.get(&reply.ip) else {
            return;
        };
        if !self.set_answered(host, reply.port) {
            return; // duplicate (a retransmitted probe answered twice)
        }
        if reply.open && self.canaries.deciding.binary_search(&reply.port).is_ok() {
            self.canary_open[host] += 1;
        }
        if self.canaries.is_extra(reply.port) {
            return; // a canary nobody asked about: not part of the result
        }
        if reply.forged {
            self.forged[host] += 1;
        } else if reply.open {
            self.open[host].push(reply.port);
        } else {
            self.closed[host] += 1;
        }
    }

    pub(super) fn unreachable(&mut self, host: usize, port: u16) {
        if self.set_answered(host, port) {
            self.unreachable[host].push(port);
        }
    }

    pub(super) fn error(&mut self, host: usize, port: u16) {
        if self.set_answered(host, port) {
            self.errors[host].push(port);
        }
    }

    pub(super) fn unanswered(&self, order: &[u16]) -> Vec<(usize, u16)> {
        let mut out = Vec::new();
        for &port in order {
            for host in 0..self.hosts.len() {
                if !self.is_answered(host, port) {
                    out.push((host, port));
                }
            }
        }
        out
    }

    pub(super) fn finish(
        &mut self,
        host: usize,
        ip: IpAddr,
        ports: &PortSet,
        record_outcomes: bool,
    ) -> HostResult {
        let mut open = std::mem::take(&mut self.open[host]);
        open.sort_unstable();
        let wildcard = self.canaries.is_wildcard(self.canary_open[host]);
        let forged = self.forged[host];
        let unverified = forged + if wildcard { open.len() as u32 } else { 0 };
        if wildcard {
            // Every port "answers": no single answer means anything.
            open.clear();
        }
        let errors = std::mem::take(&mut self.errors[host]);
        let unreachable = std::mem::take(&mut self.unreachable[host]);
        let total = ports.len();
        let answered_total = open.len() as u32
            + unverified
            + self.closed[host]
            + unreachable.len() as u32
            + errors.len() as u32;
        let counts = OutcomeCounts {
            open: open.len() as u32,
            closed: self.closed[host],
            filtered: total.saturating_sub(answered_total),
            unreachable: unreachable.len() as u32,
            error: errors.len() as u32,
        };
        let outcomes = if record_outcomes {
            let open_set: std::collections::HashSet<u16> = open.iter().copied().collect();
            ports
                .iter()
                .map(|p| {
                    let outcome = if open_set.contains(&p) {
                        ProbeOutcome::Open
                    } else if errors.contains(&p) {
                        ProbeOutcome::Error
                    } else if unreachable.contains(&p) {
                        ProbeOutcome::Unreachable
                    } else if self.is_answered(host, p) {
                        ProbeOutcome::Closed
                    } else {
                        ProbeOutcome::Filtered
                    };
                    (p, outcome, None)
                })
                .collect()
        } else {
            Vec::new()
        };
        let now = Utc::now();
        HostResult {
            ip,
            started_at: self.started_at[host].unwrap_or(now),
            finished_at: now,
            // Ports that could not be probed say nothing about the target, and
            // neither does any port of a wildcard host.
            covered: if wildcard {
                PortSet::empty()
            } else {
                ports.without(&errors)
            },
            open: open
                .into_iter()
                .map(|port| OpenPort { port, rtt: None })
                .collect(),
            counts,
            outcomes,
            evidence: Evidence::SynAck,
            wildcard,
            unverified,
        }
    }
}
