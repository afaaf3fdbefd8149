//! Probes: turn targets into observations.
//!
//! `**probes** → event log → projections → stores → alerts / API / dashboards`
//!
//! Every technique is listed once in [`REGISTRY`] with what it emits, like zmap's
//! probe modules. Scanners never print and never decide policy: they report outcomes
//! (open, closed, filtered, unreachable, error) as data, and refuse any address
//! outside the [`Scope`] they are given.

pub mod canary;
pub mod connect;
pub mod detect;
pub mod icmp;
pub mod liveness;
pub mod nmap;
pub mod panels;
pub mod reserved;
pub mod scanner;
pub mod service;
pub mod syn;
pub mod targets;
pub mod web;

pub use connect::{
    ConnectConfig, ConnectScanner, HostResult, OpenPort, Pacer, ScanError, ScanProgress, ScanRequest,
    ScanSummary,
};
pub use liveness::Pinger;
pub use scanner::{ScanMode, Scanner};
pub use syn::{ProbeKind, SynConfig, SynError, SynScanner};
pub use targets::{Scope, TargetError, TargetSet};

/// One entry of the probe registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeInfo {
    /// Stable name (used in config and logs).
    pub name: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Observation kinds it emits.
    pub emits: &'static [&'static str],
    /// Whether it needs root or CAP_NET_RAW.
    pub privileged: bool,
}

/// Every probe technique portwatch has.
pub const REGISTRY: &[ProbeInfo] = &[
    ProbeInfo {
        name: "tcp_connect",
        summary: "full TCP handshake per port; unprivileged; SO_LINGER 0",
        emits: &["host_scan", "port_detail"],
        privileged: false,
    },
    ProbeInfo {
        name: "tcp_syn",
        summary:
            "stateless raw SYN scan with keyed-hash cookies and retransmission passes; root or CAP_NET_RAW",
        emits: &["host_scan", "port_detail"],
        privileged: true,
    },
    ProbeInfo {
        name: "icmp_echo",
        summary: "host liveness: ICMP echo request, two tries; root or CAP_NET_RAW",
        emits: &["host_liveness"],
        privileged: true,
    },
    ProbeInfo {
        name: "tcp_syn_ping",
        summary: "host liveness: raw SYNs to a few common ports, alive on SYN-ACK or RST",
        emits: &["host_liveness"],
        privileged: true,
    },
    ProbeInfo {
        name: "tcp_ack_ping",
        summary:
            "host liveness: unsolicited ACKs to a few common ports, alive on RST; passes stateless filters",
        emits: &["host_liveness"],
        privileged: true,
    },
    ProbeInfo {
        name: "tcp_connect_ping",
        summary: "host liveness: any answer (handshake or reset) on a few common ports",
        emits: &["host_liveness"],
        privileged: false,
    },
];

#[cfg(test)]
mod tests {
    #[test]
    fn registry_names_are_unique() {
        let mut names: Vec<_> = super::REGISTRY.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::REGISTRY.len());
    }
}
