//! Stateless TCP SYN scanner over raw sockets (needs root or CAP_NET_RAW).
//!
//! In the spirit of zmap and masscan: the sequence number of every probe is a keyed
//! hash (SipHash with a per-scan random key) of the target address, target port and
//! our source port, so a reply is matched by checking `ack == cookie + 1` with no
//! per-probe table, and forged or stray replies are dropped. A separate thread
//! receives replies on a raw socket while the sender paces probes with `governor`.
//!
//! Accuracy first: instead of hoping no reply was lost (masscan's weak spot here:
//! its capture ring drops SYN-ACKs under load), every probe that got no answer is
//! sent again in a retransmission pass. Answers that only the retransmission got are
//! measured loss; when loss shows up, the next pass runs at half the rate. Passes stop
//! when a retransmission recovers nothing or `max_passes` is reached; what never
//! answers is filtered.
//!
//! The source port is reserved by binding (not listening) a TCP socket to it, so no
//! other program can use it and the kernel answers our SYN-ACKs with RST, closing the
//! half-open connections on the targets as a polite scanner must.
//!
//! IPv4 only for now; the caller routes IPv6 targets to the connect scanner.

mod cookie;
mod passes;
mod receiver;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use crate::canary::Canaries;
use crate::connect::{HostResult, Pacer, ScanError, ScanRequest, ScanSummary};

pub(crate) use cookie::{Cookie, Reply};
use passes::{ChunkRun, ChunkState};
use receiver::Receiver;

/// Tuning of the SYN scanner.
#[derive(Debug, Clone)]
pub struct SynConfig {
    /// Probes per second, across all targets (the first pass; later passes may slow).
    pub rate: NonZeroU32,
    /// Most probes per second to any one host.
    pub per_host_rate: Option<NonZeroU32>,
    /// How long to wait for replies after each pass.
    pub wait: Duration,
    /// Most passes (the first plus retransmissions of unanswered probes).
    pub max_passes: u32,
    /// Source address written into probes of its family (the other family uses
    /// the kernel's route choice). `None`: chosen by route.
    pub source: Option<IpAddr>,
    /// The shared pacer; `None`: this scanner paces itself at `rate`.
    pub pacer: Option<Pacer>,
}

impl Default for SynConfig {
    fn default() -> Self {
        Self {
            rate: NonZeroU32::new(50_000).unwrap_or(NonZeroU32::MIN),
            per_host_rate: None,
            wait: Duration::from_millis(1000),
            max_passes: 3,
            source: None,
            pacer: None,
        }
    }
}

/// Why the SYN scanner cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum SynError {
    /// No root / CAP_NET_RAW.
    #[error("SYN scanning needs root or CAP_NET_RAW ({0})")]
    NoPrivilege(std::io::Error),
    /// Some other socket failure.
    #[error("cannot set up raw sockets: {0}")]
    Socket(std::io::Error),
}

/// What a raw probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// A SYN: SYN-ACK means open, RST closed.
    Syn,
    /// An unsolicited ACK (liveness): any live host answers RST, and stateless
    /// filters that drop SYNs often let it through.
    Ack,
}

/// The SYN scanner. Create it once; it holds the sending socket and the reserved
/// source port.
#[derive(Debug)]
pub struct SynScanner {
    cfg: SynConfig,
    pacer: Pacer,
    sender: Socket,
    /// IPv6 sender, when the host has IPv6.
    sender_v6: Option<Socket>,
    source_port: u16,
    _reservation: Socket,
}

impl SynScanner {
    /// Open the raw sending socket and reserve a source port outside the ephemeral
    /// range. Fails with [`SynError::NoPrivilege`] without root or CAP_NET_RAW.
    pub fn new(cfg: SynConfig) -> Result<Self, SynError> {
        let sender = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
            .map_err(privilege_or_socket)?;
        sender.set_nonblocking(true).map_err(SynError::Socket)?;
        let sender_v6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::TCP))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| tracing::debug!(error = %e, "no IPv6 raw socket; IPv6 targets use connect"))
            .ok();
        let (reservation, source_port) = reserve_source_port()?;
        Ok(Self {
            pacer: cfg.pacer.clone().unwrap_or_else(|| Pacer::new(cfg.rate)),
            cfg,
            sender,
            sender_v6,
            source_port,
            _reservation: reservation,
        })
    }

    /// Whether IPv6 targets can be SYN-scanned here.
    pub fn has_ipv6(&self) -> bool {
        self.sender_v6.is_some()
    }

    /// The reserved source port of every probe.
    pub fn source_port(&self) -> u16 {
        self.source_port
    }

    /// Scan `targets` (IPv6 ones only if [`Self::has_ipv6`]) and send each host's
    /// result to `sink` when its chunk is done.
    pub async fn scan(
        &self,
        targets: impl Iterator<Item = IpAddr>,
        request: ScanRequest<'_>,
        sink: mpsc::Sender<HostResult>,
    ) -> Result<ScanSummary, ScanError> {
        self.scan_as((ProbeKind::Syn, request), targets, sink).await
    }

    /// Like [`Self::scan`] with another probe kind. With [`ProbeKind::Ack`] every
    /// answer is a reset and is reported as `closed`: the host is alive.
    pub async fn scan_as(
        &self,
        (kind, request): (ProbeKind, ScanRequest<'_>),
        targets: impl Iterator<Item = IpAddr>,
        sink: mpsc::Sender<HostResult>,
    ) -> Result<ScanSummary, ScanError> {
        let started = std::time::Instant::now();
        let ScanRequest {
            ports,
            scope,
            record_outcomes,
            progress,
            canaries,
        } = request;
        let mut summary = ScanSummary::default();
        if ports.is_empty() {
            return Ok(summary);
        }
        let cookie = Arc::new(Cookie::of_kind(self.source_port, kind));
        let mut receiver = Receiver::start(cookie.clone(), self.sender_v6.is_some())?;
        let canaries = Arc::new(Canaries::for_scan(ports, canaries));
        let order = canaries.probe_order(ports);
        let mut slot = vec![u32::MAX; 65_536];
        for (i, &port) in order.iter().enumerate() {
            slot[usize::from(port)] = i as u32;
        }
        let slot: Arc<[u32]> = slot.into();
        // About a million probes per chunk: bounds the per-chunk bookkeeping (one bit
        // per probe, plus the unanswered list of a retransmission pass).
        let chunk_hosts = (1_000_000 / order.len()).clamp(1, 16_384);
        let mut rate = self.cfg.rate.get();
        let mut targets = targets.peekable();
        while targets.peek().is_some() {
            let chunk: Vec<IpAddr> = targets.by_ref().take(chunk_hosts).collect();
            if let Some(&ip) = chunk.iter().find(|ip| !scope.allows(**ip)) {
                return Err(ScanError::OutOfScope { ip });
            }
            progress.planned.fetch_add(
                chunk.len() as u64 * order.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let mut run = ChunkRun {
                state: ChunkState::new(&chunk, (canaries.clone(), slot.clone()), self.cfg.source),
                replies: &mut receiver.replies,
                progress: &progress,
                cookie: &cookie,
            };
            for pass in 0..self.cfg.max_passes.max(1) {
                let resend: Vec<(usize, u16)> = if pass == 0 {
                    Vec::new()
                } else {
                    run.state.unanswered(&order)
                };
                if pass > 0 && resend.is_empty() {
                    break;
                }
                let per_host_cap = self
                    .cfg
                    .per_host_rate
                    .map_or(u64::MAX, |r| u64::from(r.get()) * run.state.hosts.len() as u64);
                let pass_rate = u64::from(rate).min(per_host_cap).max(1) as u32;
                let answered_before = run.state.answered;
                if pass == 0 {
                    let n = run.state.hosts.len();
                    let probes = (0..n * order.len()).map(|i| (i % n, order[i / n]));
                    self.send_pass(&mut run, probes, pass_rate).await;
                } else {
                    self.send_pass(&mut run, resend.iter().copied(), pass_rate).await;
                }
                // Let the last replies arrive; stop early once every probe of the
                // chunk has its answer (common on a LAN, and in rechecks of open
                // ports): there is nothing left to wait for.
                let deadline = tokio::time::Instant::now() + self.cfg.wait;
                let total = (run.state.hosts.len() * order.len()) as u64;
                while run.state.answered < total {
                    match tokio::time::timeout_at(deadline, run.replies.recv()).await {
                        Ok(Some(reply)) => run.state.record(reply),
                        _ => break,
                    }
                }
                if pass > 0 {
                    let recovered = run.state.answered - answered_before;
                    if recovered == 0 {
                        break;
                    }
                    // Answers that only a retransmission got: the first try lost them
                    // somewhere (our receive path, the network, the target).
                    let loss = recovered as f64 / run.state.answered.max(1) as f64;
                    tracing::info!(
                        pass,
                        recovered,
                        resent = resend.len(),
                        loss = %format!("{:.3}%", loss * 100.0),
                        rate = pass_rate,
                        "SYN scan recovered lost replies; slowing down"
                    );
                    metrics::counter!("portwatch_probe_syn_recovered_total").increment(recovered);
                    rate = (pass_rate / 2).max(1);
                }
            }
            let mut state = run.state;
            for (idx, ip) in chunk.iter().enumerate() {
                let result = state.finish(idx, *ip, ports, record_outcomes);
                summary.hosts += 1;
                summary.probes += order.len() as u64;
                summary.counts.merge(&result.counts);
                progress
                    .hosts_done
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                sink.send(result).await.map_err(|_| ScanError::ReceiverClosed)?;
            }
        }
        drop(receiver); // stops the receive thread
        summary.elapsed = started.elapsed();
        metrics::counter!("portwatch_probe_syn_sent_total").increment(summary.probes);
        Ok(summary)
    }

    async fn send_pass(&self, run: &mut ChunkRun<'_>, probes: impl Iterator<Item = (usize, u16)>, rate: u32) {
        // The shared pacer caps all scans together; a pass slowed by measured loss
        // or by the per-host cap adds its own, tighter pacer.
        let pass_pacer = (rate < self.cfg.rate.get())
            .then(|| Pacer::new(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN)));
        let mut buf = Vec::with_capacity(64);
        let mut sent = 0u64;
        for (host, port) in probes {
            if let Some(pass) = &pass_pacer {
                pass.take().await;
            }
            self.pacer.take().await;
            let dst = run.state.hosts[host];
            let src = run.state.sources[host];
            let len = run.cookie.probe_to(src, dst, port, &mut buf);
            // Raw sockets take no port in the address (it would be the protocol).
            let addr = SocketAddr::new(dst, 0);
            let socket = match (dst, &self.sender_v6) {
                (IpAddr::V4(_), _) => &self.sender,
                (IpAddr::V6(_), Some(v6)) => v6,
                (IpAddr::V6(_), None) => {
                    run.state.error(host, port);
                    continue;
                }
            };
            run.state.mark_started(host);
            loop {
                match socket.send_to(&buf[..len], &addr.into()) {
                    Ok(_) => break,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {
                        // The send queue is full: give the NIC (or veth) a moment.
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EHOSTUNREACH | libc::ENETUNREACH)) => {
                        run.state.unreachable(host, port);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%dst, port, error = %e, "SYN probe could not be sent");
                        run.state.error(host, port);
                        break;
                    }
                }
            }
            sent += 1;
            if sent.is_multiple_of(256) {
                run.progress
                    .sent
                    .fetch_add(256, std::sync::atomic::Ordering::Relaxed);
                while let Ok(reply) = run.replies.try_recv() {
                    run.state.record(reply);
                }
            }
        }
        run.progress
            .sent
            .fetch_add(sent % 256, std::sync::atomic::Ordering::Relaxed);
    }
}

fn privilege_or_socket(e: std::io::Error) -> SynError {
    if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
        SynError::NoPrivilege(e)
    } else {
        SynError::Socket(e)
    }
}

/// Bind (without listening) a TCP socket to a free port above the ephemeral range,
/// dual-stack where the host has IPv6 so the port is ours in both families.
fn reserve_source_port() -> Result<(Socket, u16), SynError> {
    let mut candidates: Vec<u16> = (61_000..=65_000).collect();
    candidates.shuffle(&mut rand::rng());
    for port in candidates.into_iter().take(200) {
        let dual = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))
            .and_then(|s| s.set_only_v6(false).map(|()| s));
        let (sock, addr) = match dual {
            Ok(sock) => (
                sock,
                SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port),
            ),
            Err(_) => (
                Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(SynError::Socket)?,
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
            ),
        };
        if sock.bind(&addr.into()).is_ok() {
            return Ok((sock, port));
        }
    }
    Err(SynError::Socket(std::io::Error::other(
        "no free source port in 61000-65000",
    )))
}

/// The source address the kernel would use towards `dst` (no packet is sent).
pub(super) fn source_for(dst: IpAddr) -> Option<IpAddr> {
    let sock = match dst {
        IpAddr::V4(_) => UdpSocket::bind("0.0.0.0:0").ok()?,
        IpAddr::V6(_) => UdpSocket::bind("[::]:0").ok()?,
    };
    sock.connect((dst, 9)).ok()?;
    Some(sock.local_addr().ok()?.ip())
}
