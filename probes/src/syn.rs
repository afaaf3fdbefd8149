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

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use etherparse::{IpNumber, Ipv4Header, Ipv4HeaderSlice, TcpHeader, TcpHeaderSlice, TcpOptionElement};
use portwatch_events::{Evidence, OutcomeCounts, PortSet, ProbeOutcome, Timestamp};
use rand::seq::SliceRandom;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use crate::canary::Canaries;
use crate::connect::{HostResult, OpenPort, Pacer, ScanError, ScanRequest, ScanSummary};

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

/// A reply the receiver matched to one of our probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) open: bool,
    /// A SYN-ACK with window 0 or no TCP options: real stacks never send one, SYN
    /// floods' "protection" and some tarpits do. Not trusted as open.
    pub(crate) forged: bool,
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

/// Keyed hash of (target, port, source port): the probe's sequence number (SYN) or
/// acknowledgement number (ACK), which the target's answer echoes back.
#[derive(Debug, Clone)]
pub(crate) struct Cookie {
    key: std::collections::hash_map::RandomState,
    source_port: u16,
    kind: ProbeKind,
}

impl Cookie {
    #[cfg(test)]
    pub(crate) fn new(source_port: u16) -> Self {
        Self::of_kind(source_port, ProbeKind::Syn)
    }

    pub(crate) fn of_kind(source_port: u16, kind: ProbeKind) -> Self {
        Self {
            key: std::collections::hash_map::RandomState::new(),
            source_port,
            kind,
        }
    }

    pub(crate) fn seq(&self, ip: impl Into<IpAddr>, port: u16) -> u32 {
        match ip.into() {
            IpAddr::V4(v4) => self.key.hash_one((v4.octets(), port, self.source_port)) as u32,
            IpAddr::V6(v6) => self.key.hash_one((v6.octets(), port, self.source_port)) as u32,
        }
    }

    /// Match a raw IPv4 packet (IP header included) against our probes.
    pub(crate) fn check(&self, packet: &[u8]) -> Option<Reply> {
        let ip = Ipv4HeaderSlice::from_slice(packet).ok()?;
        if ip.protocol() != IpNumber::TCP {
            return None;
        }
        self.check_tcp(
            IpAddr::V4(ip.source_addr()),
            packet.get(usize::from(ip.ihl()) * 4..)?,
        )
    }

    /// Match a TCP segment from `src` against our probes (IPv6 raw sockets deliver
    /// the segment alone; the address comes from `recvfrom`).
    pub(crate) fn check_tcp(&self, src: IpAddr, segment: &[u8]) -> Option<Reply> {
        let tcp = TcpHeaderSlice::from_slice(segment).ok()?;
        if tcp.destination_port() != self.source_port {
            return None;
        }
        let port = tcp.source_port();
        if self.kind == ProbeKind::Ack {
            // RFC 9293: the reset answering an unacceptable ACK carries SEQ = SEG.ACK.
            let ours = tcp.rst() && tcp.sequence_number() == self.seq(src, port);
            return ours.then_some(Reply {
                ip: src,
                port,
                open: false,
                forged: false,
            });
        }
        if tcp.acknowledgment_number() != self.seq(src, port).wrapping_add(1) {
            return None;
        }
        if tcp.syn() && tcp.ack() {
            let forged = tcp.window_size() == 0 || tcp.options().is_empty();
            Some(Reply {
                ip: src,
                port,
                open: true,
                forged,
            })
        } else if tcp.rst() {
            Some(Reply {
                ip: src,
                port,
                open: false,
                forged: false,
            })
        } else {
            None
        }
    }

    fn syn_header(&self, dst: IpAddr, port: u16) -> TcpHeader {
        if self.kind == ProbeKind::Ack {
            let mut tcp = TcpHeader::new(self.source_port, port, self.seq(dst, port) ^ 0x9e37_79b9, 1024);
            tcp.ack = true;
            tcp.acknowledgment_number = self.seq(dst, port);
            return tcp;
        }
        let mut tcp = TcpHeader::new(self.source_port, port, self.seq(dst, port), 64240);
        tcp.syn = true;
        // Real stacks send options with a SYN; some firewalls drop option-less ones.
        let _ = tcp.set_options(&[TcpOptionElement::MaximumSegmentSize(1460)]);
        tcp
    }

    /// Build the SYN probe for (src → dst:port) into `buf`: a whole IPv4 packet, or
    /// for IPv6 the TCP segment alone (the kernel adds the IPv6 header, but not the
    /// TCP checksum, which covers the addresses). Returns its length.
    pub(crate) fn probe_to(&self, src: IpAddr, dst: IpAddr, port: u16, buf: &mut Vec<u8>) -> usize {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.probe(s, d, port, buf),
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut tcp = self.syn_header(dst, port);
                tcp.checksum = tcp
                    .calc_checksum_ipv6_raw(s.octets(), d.octets(), &[])
                    .unwrap_or(0);
                buf.clear();
                buf.extend_from_slice(&tcp.to_bytes());
                buf.len()
            }
            _ => {
                buf.clear();
                0
            }
        }
    }

    /// Build the IPv4 SYN probe for (src → dst:port) into `buf`; returns its length.
    pub(crate) fn probe(&self, src: Ipv4Addr, dst: Ipv4Addr, port: u16, buf: &mut Vec<u8>) -> usize {
        let mut tcp = self.syn_header(IpAddr::V4(dst), port);
        tcp.checksum = tcp
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &[])
            .unwrap_or(0);
        buf.clear();
        if let Ok(mut ip) = Ipv4Header::new(
            tcp.header_len_u16(),
            64,
            IpNumber::TCP,
            src.octets(),
            dst.octets(),
        ) {
            ip.identification = (tcp.sequence_number >> 16) as u16;
            ip.header_checksum = ip.calc_header_checksum();
            buf.extend_from_slice(&ip.to_bytes());
            buf.extend_from_slice(&tcp.to_bytes());
        }
        buf.len()
    }
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
fn source_for(dst: IpAddr) -> Option<IpAddr> {
    let sock = match dst {
        IpAddr::V4(_) => UdpSocket::bind("0.0.0.0:0").ok()?,
        IpAddr::V6(_) => UdpSocket::bind("[::]:0").ok()?,
    };
    sock.connect((dst, 9)).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

struct Receiver {
    replies: mpsc::UnboundedReceiver<Reply>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Start the receive thread(s): one per address family in use.
    fn start(cookie: Arc<Cookie>, ipv6: bool) -> Result<Self, ScanError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let families: &[Domain] = if ipv6 {
            &[Domain::IPV4, Domain::IPV6]
        } else {
            &[Domain::IPV4]
        };
        for &domain in families {
            let socket = Socket::new(domain, Type::RAW, Some(Protocol::TCP))
                .map_err(|e| ScanError::Setup(format!("raw receive socket: {e}")))?;
            // A large receive buffer absorbs bursts of replies while the thread is
            // not scheduled; FORCE lifts the rmem_max cap (we are privileged anyway).
            let _ =
                nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20));
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| ScanError::Setup(format!("raw receive socket: {e}")))?;
            let (tx, flag, cookie) = (tx.clone(), stop.clone(), cookie.clone());
            std::thread::Builder::new()
                .name("syn-recv".into())
                .spawn(move || receive_loop(&socket, domain == Domain::IPV6, &cookie, (&tx, &flag)))
                .map_err(|e| ScanError::Setup(format!("receiver thread: {e}")))?;
        }
        Ok(Self { replies: rx, stop })
    }
}

/// Read replies until `stop`; IPv4 raw sockets deliver whole packets, IPv6 ones
/// the TCP segment alone, with the sender's address from `recvfrom`.
fn receive_loop(
    socket: &Socket,
    ipv6: bool,
    cookie: &Cookie,
    (tx, stop): (&mpsc::UnboundedSender<Reply>, &AtomicBool),
) {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 2048];
    let mut sock = socket;
    while !stop.load(Ordering::Relaxed) {
        let received = if ipv6 {
            nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrIn6>(socket.as_raw_fd(), &mut buf)
                .map(|(n, from)| from.map(|a| (n, IpAddr::V6(a.ip()))))
                .map_err(std::io::Error::from)
        } else {
            sock.read(&mut buf)
                .map(|n| Some((n, IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
        };
        match received {
            Ok(Some((n, from))) => {
                let reply = if ipv6 {
                    cookie.check_tcp(from, &buf[..n])
                } else {
                    cookie.check(&buf[..n])
                };
                if let Some(reply) = reply {
                    if tx.send(reply).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!(error = %e, "SYN receiver failed");
                return;
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One chunk being scanned: its state and what the passes need around it.
struct ChunkRun<'a> {
    state: ChunkState,
    replies: &'a mut mpsc::UnboundedReceiver<Reply>,
    progress: &'a crate::connect::ScanProgress,
    cookie: &'a Cookie,
}

/// Per-chunk bookkeeping: which probes got an answer, and what it was.
struct ChunkState {
    hosts: Vec<IpAddr>,
    sources: Vec<IpAddr>,
    index: HashMap<IpAddr, usize>,
    /// One bit per (host, probed port), indexed by the port's slot in `slot`: the
    /// bitmap grows with the ports actually probed, not with all 65536.
    answered_bits: Vec<Vec<u64>>,
    /// Port number -> its slot in the probe order (`u32::MAX`: not probed).
    slot: Arc<[u32]>,
    open: Vec<Vec<u16>>,
    closed: Vec<u32>,
    unreachable: Vec<Vec<u16>>,
    errors: Vec<Vec<u16>>,
    started_at: Vec<Option<Timestamp>>,
    answered: u64,
    canaries: Arc<Canaries>,
    canary_open: Vec<usize>,
    forged: Vec<u32>,
}

impl ChunkState {
    fn new(chunk: &[IpAddr], (canaries, slot): (Arc<Canaries>, Arc<[u32]>), source: Option<IpAddr>) -> Self {
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

    fn mark_started(&mut self, host: usize) {
        if self.started_at[host].is_none() {
            self.started_at[host] = Some(Utc::now());
        }
    }

    fn set_answered(&mut self, host: usize, port: u16) -> bool {
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

    fn is_answered(&self, host: usize, port: u16) -> bool {
        let slot = self.slot[usize::from(port)];
        slot != u32::MAX && self.answered_bits[host][slot as usize / 64] & (1u64 << (slot % 64)) != 0
    }

    fn record(&mut self, reply: Reply) {
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

    fn unreachable(&mut self, host: usize, port: u16) {
        if self.set_answered(host, port) {
            self.unreachable[host].push(port);
        }
    }

    fn error(&mut self, host: usize, port: u16) {
        if self.set_answered(host, port) {
            self.errors[host].push(port);
        }
    }

    fn unanswered(&self, order: &[u16]) -> Vec<(usize, u16)> {
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

    fn finish(&mut self, host: usize, ip: IpAddr, ports: &PortSet, record_outcomes: bool) -> HostResult {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a target would send it to `probe`, with the given flags and an
    /// acknowledgement number offset from the correct `seq + 1`.
    fn reply_to(probe: &[u8], syn: bool, rst: bool, ack_offset: u32) -> Vec<u8> {
        reply_with(probe, (syn, rst), ack_offset, (1024, true))
    }

    /// Like `reply_to`, with a chosen window and with or without an MSS option.
    fn reply_with(
        probe: &[u8],
        (syn, rst): (bool, bool),
        ack_offset: u32,
        (window, mss): (u16, bool),
    ) -> Vec<u8> {
        let ip = Ipv4HeaderSlice::from_slice(probe).expect("ip");
        let tcp = TcpHeaderSlice::from_slice(&probe[usize::from(ip.ihl()) * 4..]).expect("tcp");
        let mut reply = TcpHeader::new(tcp.destination_port(), tcp.source_port(), 12345, window);
        if mss {
            reply
                .set_options(&[TcpOptionElement::MaximumSegmentSize(1460)])
                .expect("options");
        }
        reply.syn = syn;
        reply.rst = rst;
        reply.ack = true;
        reply.acknowledgment_number = tcp.sequence_number().wrapping_add(1).wrapping_add(ack_offset);
        let (src, dst) = (ip.destination(), ip.source());
        reply.checksum = reply.calc_checksum_ipv4_raw(src, dst, &[]).expect("checksum");
        let mut header = Ipv4Header::new(reply.header_len_u16(), 64, IpNumber::TCP, src, dst).expect("ip");
        header.header_checksum = header.calc_header_checksum();
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(&reply.to_bytes());
        out
    }

    fn probe(cookie: &Cookie, port: u16) -> Vec<u8> {
        let mut buf = Vec::new();
        cookie.probe(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 9),
            port,
            &mut buf,
        );
        buf
    }

    #[test]
    fn probe_is_a_valid_syn_with_mss_and_checksums() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 6379);
        let ip = Ipv4HeaderSlice::from_slice(&packet).expect("ip");
        assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
        let tcp = TcpHeaderSlice::from_slice(&packet[20..]).expect("tcp");
        assert!(tcp.syn() && !tcp.ack() && !tcp.rst());
        assert_eq!((tcp.source_port(), tcp.destination_port()), (61_234, 6379));
        assert_eq!(
            tcp.sequence_number(),
            cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 6379)
        );
        assert_eq!(
            tcp.to_header()
                .calc_checksum_ipv4_raw(ip.source(), ip.destination(), &[])
                .expect("sum"),
            tcp.checksum()
        );
        assert!(tcp.options().len() >= 4, "MSS option present");
    }

    #[test]
    fn syn_ack_is_open_and_rst_is_closed() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 22);
        let target = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(
            cookie.check(&reply_to(&packet, true, false, 0)),
            Some(Reply {
                ip: target,
                port: 22,
                open: true,
                forged: false
            })
        );
        assert_eq!(
            cookie.check(&reply_to(&packet, false, true, 0)),
            Some(Reply {
                ip: target,
                port: 22,
                open: false,
                forged: false
            })
        );
    }

    #[test]
    fn syn_acks_no_real_stack_sends_are_flagged_forged() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 22);
        let no_options = cookie
            .check(&reply_with(&packet, (true, false), 0, (1024, false)))
            .expect("reply");
        assert!(no_options.open && no_options.forged);
        let zero_window = cookie
            .check(&reply_with(&packet, (true, false), 0, (0, true)))
            .expect("reply");
        assert!(zero_window.open && zero_window.forged);
    }

    #[test]
    fn forged_or_foreign_replies_are_ignored() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 22);
        // Wrong acknowledgement number: not an answer to our probe.
        assert_eq!(cookie.check(&reply_to(&packet, true, false, 1)), None);
        // Another scanner (other key) probing the same target and port.
        let other = Cookie::new(61_234);
        assert_eq!(other.check(&reply_to(&packet, true, false, 0)), None);
        // Our own outgoing probe seen on the wire.
        assert_eq!(cookie.check(&packet), None);
        // Truncated garbage.
        assert_eq!(cookie.check(&packet[..10]), None);
        assert_eq!(cookie.check(&[]), None);
    }

    #[test]
    fn ipv6_probe_checksum_and_reply_matching() {
        let cookie = Cookie::new(61_234);
        let (src, dst): (IpAddr, IpAddr) =
            ("fd77:ff::1".parse().expect("ip"), "fd77::11".parse().expect("ip"));
        let mut buf = Vec::new();
        let len = cookie.probe_to(src, dst, 443, &mut buf);
        let tcp = TcpHeaderSlice::from_slice(&buf[..len]).expect("tcp");
        let (IpAddr::V6(s6), IpAddr::V6(d6)) = (src, dst) else {
            unreachable!()
        };
        assert!(tcp.syn() && tcp.destination_port() == 443);
        assert_eq!(
            tcp.to_header()
                .calc_checksum_ipv6_raw(s6.octets(), d6.octets(), &[])
                .expect("sum"),
            tcp.checksum()
        );
        // The target's SYN-ACK, as an IPv6 raw socket delivers it: the segment alone.
        let mut reply = TcpHeader::new(443, 61_234, 99, 65_000);
        reply.syn = true;
        reply.ack = true;
        reply.acknowledgment_number = tcp.sequence_number().wrapping_add(1);
        reply
            .set_options(&[TcpOptionElement::MaximumSegmentSize(1440)])
            .expect("options");
        let got = cookie.check_tcp(dst, &reply.to_bytes()).expect("ours");
        assert_eq!((got.ip, got.port, got.open, got.forged), (dst, 443, true, false));
        // The same segment claimed by another address is not ours.
        assert!(cookie
            .check_tcp("fd77::12".parse().expect("ip"), &reply.to_bytes())
            .is_none());
    }

    #[test]
    fn ack_probes_are_matched_by_the_reset_sequence_number() {
        let cookie = Cookie::of_kind(61_234, ProbeKind::Ack);
        let packet = probe(&cookie, 80);
        let tcp = TcpHeaderSlice::from_slice(&packet[20..]).expect("tcp");
        assert!(tcp.ack() && !tcp.syn() && !tcp.rst());
        let target = Ipv4Addr::new(10, 0, 0, 9);
        assert_eq!(tcp.acknowledgment_number(), cookie.seq(target, 80));
        let mut rst = TcpHeader::new(80, 61_234, tcp.acknowledgment_number(), 0);
        rst.rst = true;
        let got = cookie
            .check_tcp(IpAddr::V4(target), &rst.to_bytes())
            .expect("ours");
        assert!(!got.open && got.port == 80);
        rst.sequence_number = rst.sequence_number.wrapping_add(1);
        assert!(cookie.check_tcp(IpAddr::V4(target), &rst.to_bytes()).is_none());
    }

    #[test]
    fn cookies_differ_per_port_and_target() {
        let cookie = Cookie::new(61_234);
        let a = cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 22);
        assert_ne!(a, cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 23));
        assert_ne!(a, cookie.seq(Ipv4Addr::new(10, 0, 0, 8), 22));
        assert_eq!(a, cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 22));
    }
}
