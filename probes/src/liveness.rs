//! Task 0, host liveness: is anything there?
//!
//! With raw sockets (root or CAP_NET_RAW) a host is pinged with an ICMP echo, TCP
//! SYNs and TCP ACKs to a few common ports; without, with TCP connects to those
//! ports. A host
//! is alive if any probe gets an answer: an echo reply, a SYN-ACK, or a reset. So a
//! host that drops ICMP but serves TCP is alive, and a host is declared dead only
//! when every method met silence. Each probe's outcome is kept in the event.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use portwatch_events::{HostLiveness, LivenessMethod, LivenessProbe, PortSet, ProbeOutcome};
use tokio::sync::mpsc;

use crate::connect::{ConnectConfig, ConnectScanner, HostResult, ScanError, ScanProgress, ScanRequest};
use crate::icmp::{ipv4_only, EchoResult, IcmpPinger};
use crate::scanner::ScanMode;
use crate::syn::{ProbeKind, SynConfig, SynError, SynScanner};
use crate::targets::Scope;

/// Ports tried by the TCP liveness check: commonly open or at least answered (RST)
/// on internet-facing hosts.
pub const LIVENESS_PORTS: &[u16] = &[22, 80, 443, 3389, 8080, 8443];

/// Turn a scan of the liveness ports into liveness probes.
fn tcp_probes(result: &HostResult, method: LivenessMethod) -> Vec<LivenessProbe> {
    result
        .outcomes
        .iter()
        .map(|&(port, outcome, rtt)| LivenessProbe {
            method,
            port: Some(port),
            outcome,
            rtt_ms: rtt
                .filter(|_| matches!(outcome, ProbeOutcome::Open | ProbeOutcome::Closed))
                .map(|d| d.as_secs_f64() * 1000.0),
        })
        .collect()
}

/// A connect-scan result as a liveness verdict (unprivileged pings).
pub fn liveness_from(result: &HostResult) -> HostLiveness {
    HostLiveness {
        ip: result.ip,
        alive: result.counts.host_answered(),
        probes: tcp_probes(result, LivenessMethod::TcpConnect),
    }
}

/// A scan of the liveness ports: every port's outcome kept, no canaries (a
/// wildcard host is alive all the same).
fn ping_request<'a>(ports: &'a PortSet, scope: &'a Scope) -> ScanRequest<'a> {
    ScanRequest {
        ports,
        scope,
        record_outcomes: true,
        progress: Arc::new(ScanProgress::default()),
        canaries: false,
    }
}

/// Raw-socket pingers.
#[derive(Debug)]
struct Raw {
    icmp: Arc<IcmpPinger>,
    syn: SynScanner,
}

/// Pings hosts with every method this process may use.
#[derive(Debug)]
pub struct Pinger {
    connect: ConnectScanner,
    raw: Option<Raw>,
}

impl Pinger {
    /// Raw methods for `Syn` (an error without privileges) and `Auto` (when
    /// privileged; else connect, logged); connect pings only for `Connect`.
    pub fn new(mode: ScanMode, syn: SynConfig, connect: ConnectConfig) -> Result<Self, SynError> {
        let raw = match mode {
            ScanMode::Connect => None,
            ScanMode::Syn | ScanMode::Auto => {
                let pacer = syn
                    .pacer
                    .clone()
                    .unwrap_or_else(|| crate::connect::Pacer::new(syn.rate));
                let made = IcmpPinger::new(pacer, syn.wait).and_then(|icmp| {
                    Ok(Raw {
                        icmp: Arc::new(icmp),
                        syn: SynScanner::new(syn)?,
                    })
                });
                match (made, mode) {
                    (Ok(raw), _) => Some(raw),
                    (Err(err), ScanMode::Syn) => return Err(err),
                    (Err(err), _) => {
                        tracing::info!(reason = %err, "liveness uses TCP connect pings only");
                        None
                    }
                }
            }
        };
        Ok(Self {
            connect: ConnectScanner::new(connect),
            raw,
        })
    }

    /// Whether ICMP and SYN pings are in use.
    pub fn is_raw(&self) -> bool {
        self.raw.is_some()
    }

    /// Ping every target; each host's verdict goes to `sink`. Returns hosts pinged.
    pub async fn ping(
        &self,
        targets: Vec<IpAddr>,
        (ports, scope): (&PortSet, &Scope),
        sink: mpsc::Sender<HostLiveness>,
    ) -> Result<u64, ScanError> {
        if let Some(&ip) = targets.iter().find(|ip| !scope.allows(**ip)) {
            return Err(ScanError::OutOfScope { ip });
        }
        let Some(raw) = &self.raw else {
            return self.connect_ping(targets, (ports, scope), sink).await;
        };
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = targets.into_iter().partition(IpAddr::is_ipv4);
        // ICMP in a blocking thread while the SYN pings run here.
        let icmp = raw.icmp.clone();
        let v4_addrs = ipv4_only(&v4);
        let echoes = tokio::task::spawn_blocking(move || icmp.ping(&v4_addrs));
        let (tx, rx) = mpsc::channel::<HostResult>(256);
        let request = ping_request(ports, scope);
        let collect = |mut rx: mpsc::Receiver<HostResult>| {
            tokio::spawn(async move {
                let mut by_ip = HashMap::new();
                while let Some(result) = rx.recv().await {
                    by_ip.insert(result.ip, result);
                }
                by_ip
            })
        };
        let syn_results = collect(rx);
        raw.syn.scan(v4.iter().copied(), request.clone(), tx).await?;
        let tcp = syn_results
            .await
            .map_err(|e| ScanError::Setup(format!("liveness collector: {e}")))?;
        let (tx, rx) = mpsc::channel::<HostResult>(256);
        let ack_results = collect(rx);
        raw.syn
            .scan_as((ProbeKind::Ack, request), v4.iter().copied(), tx)
            .await?;
        let acks = ack_results
            .await
            .map_err(|e| ScanError::Setup(format!("liveness collector: {e}")))?;
        let echoes = echoes
            .await
            .map_err(|e| ScanError::Setup(format!("ICMP pinger: {e}")))?;
        let mut n = 0;
        for ip in &v4 {
            let mut probes = Vec::new();
            if let IpAddr::V4(v4ip) = ip {
                let (outcome, rtt) = match echoes.get(v4ip) {
                    Some(EchoResult::Reply(rtt)) => (ProbeOutcome::Open, Some(rtt.as_secs_f64() * 1000.0)),
                    _ => (ProbeOutcome::Filtered, None),
                };
                probes.push(LivenessProbe {
                    method: LivenessMethod::IcmpEcho,
                    port: None,
                    outcome,
                    rtt_ms: rtt,
                });
            }
            if let Some(result) = tcp.get(ip) {
                probes.extend(tcp_probes(result, LivenessMethod::TcpSyn));
            }
            if let Some(result) = acks.get(ip) {
                probes.extend(tcp_probes(result, LivenessMethod::TcpAck));
            }
            let alive = probes
                .iter()
                .any(|p| matches!(p.outcome, ProbeOutcome::Open | ProbeOutcome::Closed));
            n += 1;
            if sink
                .send(HostLiveness {
                    ip: *ip,
                    alive,
                    probes,
                })
                .await
                .is_err()
            {
                return Ok(n);
            }
        }
        if !v6.is_empty() {
            n += self.connect_ping(v6, (ports, scope), sink).await?;
        }
        Ok(n)
    }

    async fn connect_ping(
        &self,
        targets: Vec<IpAddr>,
        (ports, scope): (&PortSet, &Scope),
        sink: mpsc::Sender<HostLiveness>,
    ) -> Result<u64, ScanError> {
        let (tx, mut rx) = mpsc::channel::<HostResult>(256);
        let forward = tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(result) = rx.recv().await {
                n += 1;
                if sink.send(liveness_from(&result)).await.is_err() {
                    break;
                }
            }
            n
        });
        let request = ping_request(ports, scope);
        self.connect.scan(targets.into_iter(), request, tx).await?;
        Ok(forward.await.unwrap_or(0))
    }
}
