//! Task 0, host liveness, with TCP connect pings: a host is alive if any of a few
//! common ports answers, whether with a handshake or with a reset. (ICMP and raw
//! SYN/ACK pings need privileges and belong to the raw-socket scanner.)

use std::net::IpAddr;
use std::sync::Arc;

use portwatch_events::{HostLiveness, LivenessMethod, LivenessProbe, PortSet, ProbeOutcome};
use tokio::sync::mpsc;

use crate::connect::{ConnectScanner, HostResult, ScanError, ScanProgress, ScanRequest};
use crate::targets::Scope;

/// Turn a connect scan of the liveness ports into a liveness observation.
pub fn liveness_from(result: &HostResult) -> HostLiveness {
    HostLiveness {
        ip: result.ip,
        alive: result.counts.host_answered(),
        probes: result
            .outcomes
            .iter()
            .map(|&(port, outcome, rtt)| LivenessProbe {
                method: LivenessMethod::TcpConnect,
                port: Some(port),
                outcome,
                rtt_ms: rtt
                    .filter(|_| matches!(outcome, ProbeOutcome::Open | ProbeOutcome::Closed))
                    .map(|d| d.as_secs_f64() * 1000.0),
            })
            .collect(),
    }
}

/// Ping every target on `ports`; each host's verdict goes to `sink`.
pub async fn ping(
    scanner: &ConnectScanner,
    targets: impl Iterator<Item = IpAddr>,
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
    let request = ScanRequest {
        ports,
        scope,
        record_outcomes: true,
        progress: Arc::new(ScanProgress::default()),
        canaries: false,
    };
    scanner.scan(targets, request, tx).await?;
    Ok(forward.await.unwrap_or(0))
}
