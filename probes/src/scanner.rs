//! The scanner an operator asked for: SYN when it can, TCP connect otherwise.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::connect::{ConnectConfig, ConnectScanner, HostResult, ScanError, ScanRequest, ScanSummary};
use crate::syn::{SynConfig, SynError, SynScanner};

/// Which technique to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanMode {
    /// SYN if this process may open raw sockets, else connect (logged).
    #[default]
    Auto,
    /// Raw SYN scan; an error without root or CAP_NET_RAW.
    Syn,
    /// Full TCP connect; works unprivileged.
    Connect,
}

impl std::str::FromStr for ScanMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ScanMode::Auto),
            "syn" => Ok(ScanMode::Syn),
            "connect" => Ok(ScanMode::Connect),
            other => Err(format!(
                "unknown scan mode `{other}` (expected auto, syn or connect)"
            )),
        }
    }
}

/// A ready scanner.
#[derive(Debug)]
pub enum Scanner {
    /// TCP connect for everything.
    Connect(ConnectScanner),
    /// SYN scan (IPv6 too where the host has IPv6 raw sockets, else connect).
    Syn {
        /// The raw-socket scanner.
        syn: SynScanner,
        /// For IPv6 targets.
        connect: ConnectScanner,
    },
}

impl Scanner {
    /// Build the scanner for `mode`. `Auto` falls back to connect, with an info line
    /// saying why; an explicit `Syn` without privileges is an error.
    pub fn new(mode: ScanMode, syn: SynConfig, connect: ConnectConfig) -> Result<Self, SynError> {
        match mode {
            ScanMode::Connect => Ok(Scanner::Connect(ConnectScanner::new(connect))),
            ScanMode::Syn => Ok(Scanner::Syn {
                syn: SynScanner::new(syn)?,
                connect: ConnectScanner::new(connect),
            }),
            ScanMode::Auto => match SynScanner::new(syn) {
                Ok(syn) => Ok(Scanner::Syn {
                    syn,
                    connect: ConnectScanner::new(connect),
                }),
                Err(err) => {
                    tracing::info!(reason = %err, "using the TCP connect scanner");
                    Ok(Scanner::Connect(ConnectScanner::new(connect)))
                }
            },
        }
    }

    /// The technique in use, for logs and job records.
    pub fn mode(&self) -> ScanMode {
        match self {
            Scanner::Connect(_) => ScanMode::Connect,
            Scanner::Syn { .. } => ScanMode::Syn,
        }
    }

    /// Scan `targets` on `request.ports`; each host's result goes to `sink`.
    pub async fn scan<I>(
        &self,
        targets: I,
        request: ScanRequest<'_>,
        sink: mpsc::Sender<HostResult>,
    ) -> Result<ScanSummary, ScanError>
    where
        I: Iterator<Item = IpAddr> + Clone,
    {
        match self {
            Scanner::Connect(connect) => connect.scan(targets, request, sink).await,
            Scanner::Syn { syn, .. } if syn.has_ipv6() => syn.scan(targets, request, sink).await,
            Scanner::Syn { syn, connect } => {
                let v6 = targets.clone().filter(IpAddr::is_ipv6);
                let mut summary = syn
                    .scan(targets.filter(IpAddr::is_ipv4), request.clone(), sink.clone())
                    .await?;
                if v6.clone().next().is_some() {
                    tracing::info!("no IPv6 raw sockets here: IPv6 targets use the TCP connect scanner");
                    let more = connect.scan(v6, request, sink).await?;
                    summary.hosts += more.hosts;
                    summary.probes += more.probes;
                    summary.counts.merge(&more.counts);
                    summary.local_retries += more.local_retries;
                    summary.elapsed += more.elapsed;
                }
                Ok(summary)
            }
        }
    }
}

/// A shared scanner.
pub type SharedScanner = Arc<Scanner>;
