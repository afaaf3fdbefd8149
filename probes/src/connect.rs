//! TCP connect scanner: the unprivileged technique that works everywhere.
//!
//! Each probe is a non-blocking `connect()` on a socket2 socket registered with tokio.
//! Probes run as tokio tasks on every worker thread, many in flight, paced globally by
//! a `governor` rate limiter. Design points:
//!
//! - **SO_LINGER 0**: closing an established probe connection sends RST instead of
//!   FIN, so the socket never enters TIME_WAIT. Without it a full-range scan leaves
//!   tens of thousands of TIME_WAIT sockets and runs out of ephemeral ports.
//! - **Local resource errors back off**: EMFILE/ENFILE/ENOBUFS/EADDRNOTAVAIL are our
//!   problem, not the target's. The probe sleeps and retries (bounded), and the scan
//!   lowers its in-flight cap. A port that still cannot be probed is reported as an
//!   error and left *out* of the coverage, so it is never mistaken for closed.
//! - **Self-connect**: on loopback a connect to a port inside the ephemeral range can
//!   connect to itself (TCP simultaneous open). Such a "connection" means nothing
//!   listens; it is reported as closed.
//! - **Order**: ports are shuffled per scan and probes interleave hosts (port-major),
//!   so no host sees a burst of consecutive ports.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use portwatch_events::{
    Event, Evidence, HostScan, Observation, Origin, OutcomeCounts, PortDetail, PortSet, ProbeOutcome, Proto,
    Timestamp,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::canary::Canaries;
use crate::targets::Scope;

/// The process-wide probe pacer: one token bucket that every scanner and pinger
/// built from the same settings draws from, so `[scan] rate` caps the sum of all
/// concurrent jobs, not each job. Tighter caps (per pass, per host) only add to it.
#[derive(Debug, Clone)]
pub struct Pacer(Arc<DefaultDirectRateLimiter>);

impl Pacer {
    /// A pacer of `rate` probes per second, in bursts of at most ~10 ms worth (smooth
    /// pacing, not a first-second spike of `rate` probes).
    pub fn new(rate: NonZeroU32) -> Self {
        Self(Arc::new(limiter(rate)))
    }

    /// Take one probe's token now, if there is one.
    pub fn try_take(&self) -> bool {
        self.0.check().is_ok()
    }

    /// Wait for one probe's token.
    pub async fn take(&self) {
        self.0.until_ready().await;
    }
}

/// A token bucket of `rate` per second with a burst of ~10 ms worth.
pub(crate) fn limiter(rate: NonZeroU32) -> DefaultDirectRateLimiter {
    let burst = NonZeroU32::new((rate.get() / 100).max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// Tuning of the connect scanner.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Connection attempts per second, across all targets.
    pub rate: NonZeroU32,
    /// How long to wait for a handshake before calling a port filtered.
    pub timeout: Duration,
    /// Most connection attempts in flight at once (also capped by the open-file limit).
    pub concurrency: usize,
    /// Source address to connect from (targets of the other family use the
    /// kernel's choice). `None`: the kernel chooses by route.
    pub source: Option<IpAddr>,
    /// Most attempts per second to any one host.
    pub per_host_rate: Option<NonZeroU32>,
    /// The shared pacer; `None`: this scanner paces itself at `rate`.
    pub pacer: Option<Pacer>,
}

/// What to scan besides the targets themselves.
#[derive(Debug, Clone)]
pub struct ScanRequest<'a> {
    /// Ports to probe on every target.
    pub ports: &'a PortSet,
    /// The scope every target must be inside.
    pub scope: &'a Scope,
    /// Record every port's outcome in [`HostResult::outcomes`] (for liveness, where
    /// the port list is short and each answer matters).
    pub record_outcomes: bool,
    /// Live counters to update.
    pub progress: Arc<ScanProgress>,
    /// Probe random canary ports to detect wildcard hosts (see `canary`). Always on
    /// in the product; off only where probing ports nobody listed is not allowed
    /// (unit tests on the machine's own loopback).
    pub canaries: bool,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            rate: NonZeroU32::new(10_000).unwrap_or(NonZeroU32::MIN),
            timeout: Duration::from_millis(1500),
            concurrency: 2048,
            source: None,
            per_host_rate: None,
            pacer: None,
        }
    }
}

/// An open port and how fast it answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenPort {
    /// The port.
    pub port: u16,
    /// Handshake round-trip time, where the technique measures it.
    pub rtt: Option<Duration>,
}

/// Everything one scan found about one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostResult {
    /// The host.
    pub ip: IpAddr,
    /// When its first probe was sent.
    pub started_at: Timestamp,
    /// When its last probe finished.
    pub finished_at: Timestamp,
    /// Ports probed with a definite outcome.
    pub covered: PortSet,
    /// Open ports, ascending.
    pub open: Vec<OpenPort>,
    /// Outcome counts.
    pub counts: OutcomeCounts,
    /// Per-port outcomes, only with [`ScanRequest::record_outcomes`].
    pub outcomes: Vec<(u16, ProbeOutcome, Option<Duration>)>,
    /// What the open ports' answers prove (a SYN-ACK, or a full handshake).
    pub evidence: Evidence,
    /// The host answered "open" on every canary port: it answers on any port, so
    /// none of its ports is reported open and the scan covers nothing.
    pub wildcard: bool,
    /// Ports that looked open but are not trusted (wildcard host, forged SYN-ACKs).
    pub unverified: u32,
}

impl HostResult {
    /// The observation events of this result: one host summary, then a detail event
    /// per open port (in that order, so the summary that opens a port precedes its
    /// details in the log).
    pub fn to_events(&self, origin: &Origin) -> Vec<Event> {
        let mut events = Vec::with_capacity(1 + self.open.len());
        events.push(Event::new(
            origin,
            self.finished_at,
            Observation::HostScan(HostScan {
                ip: self.ip,
                proto: Proto::Tcp,
                started_at: self.started_at,
                covered: self.covered.clone(),
                open: self.open.iter().map(|o| o.port).collect(),
                counts: self.counts,
                wildcard: self.wildcard,
                unverified: self.unverified,
            }),
        ));
        for open in &self.open {
            events.push(Event::new(
                origin,
                self.finished_at,
                Observation::PortDetail(PortDetail {
                    ip: self.ip,
                    port: open.port,
                    proto: Proto::Tcp,
                    evidence: self.evidence,
                    rtt_ms: open.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    service: None,
                    product: None,
                    version: None,
                    banner: None,
                    class: None,
                    panels: Vec::new(),
                    title: None,
                    tls_subject: None,
                }),
            ));
        }
        events
    }
}

/// Live counters of a running scan, for progress displays and metrics.
#[derive(Debug, Default)]
pub struct ScanProgress {
    /// Probes the scan will make in total.
    pub planned: AtomicU64,
    /// Probes started.
    pub sent: AtomicU64,
    /// Probes finished.
    pub done: AtomicU64,
    /// Open ports found so far.
    pub open: AtomicU64,
    /// Hosts finished.
    pub hosts_done: AtomicU64,
}

/// Totals of a finished scan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanSummary {
    /// Hosts scanned.
    pub hosts: u64,
    /// Probes made.
    pub probes: u64,
    /// Outcome counts over all hosts.
    pub counts: OutcomeCounts,
    /// Times a probe hit a local resource limit and was retried.
    pub local_retries: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Errors that stop a scan (infrastructure, never a target's behaviour).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A target outside the scope reached the scanner: a bug upstream, refused here
    /// as the last line of defence.
    #[error("refusing to probe {ip}: outside the asset scope")]
    OutOfScope {
        /// The address.
        ip: IpAddr,
    },
    /// The receiver of host results went away.
    #[error("scan result receiver closed")]
    ReceiverClosed,
    /// The scanner could not set up its sockets or threads.
    #[error("scanner setup failed: {0}")]
    Setup(String),
}

/// The TCP connect scanner.
#[derive(Debug)]
pub struct ConnectScanner {
    cfg: ConnectConfig,
    limiter: Pacer,
    max_in_flight: usize,
}

impl ConnectScanner {
    /// A scanner with this config. Raises the open-file soft limit to the hard limit
    /// (like nmap does) and keeps the in-flight cap well below it.
    pub fn new(cfg: ConnectConfig) -> Self {
        let limiter = cfg.pacer.clone().unwrap_or_else(|| Pacer::new(cfg.rate));
        let fd_limit = raise_nofile_limit();
        let max_in_flight = cfg.concurrency.min(fd_limit.saturating_sub(256) as usize).max(1);
        if max_in_flight < cfg.concurrency {
            tracing::info!(
                requested = cfg.concurrency,
                used = max_in_flight,
                fd_limit,
                "connect scanner concurrency capped by the open-file limit"
            );
        }
        Self {
            cfg,
            limiter,
            max_in_flight,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectConfig {
        &self.cfg
    }

    /// Scan `ports` on every target, sending each host's result to `sink` as soon as
    /// the host is done. Targets are consumed lazily in chunks, so memory stays bounded
    /// however large the target set is. Every target is checked against `scope` first.
    pub async fn scan(
        &self,
        targets: impl Iterator<Item = IpAddr>,
        request: ScanRequest<'_>,
        sink: mpsc::Sender<HostResult>,
    ) -> Result<ScanSummary, ScanError> {
        let ScanRequest {
            ports,
            scope,
            record_outcomes,
            progress,
            canaries,
        } = request;
        let started = Instant::now();
        let mut summary = ScanSummary::default();
        if ports.is_empty() {
            return Ok(summary);
        }
        let canaries = Arc::new(Canaries::for_scan(ports, canaries));
        let order = canaries.probe_order(ports);
        let order: Arc<[u16]> = order.into();
        // Hosts per chunk: about a million probes per chunk, at most 4096 hosts.
        let chunk_hosts = (1_000_000 / order.len()).clamp(1, 4096);
        let mut targets = targets.peekable();
        while targets.peek().is_some() {
            let chunk: Vec<IpAddr> = targets.by_ref().take(chunk_hosts).collect();
            if let Some(&ip) = chunk.iter().find(|ip| !scope.allows(**ip)) {
                return Err(ScanError::OutOfScope { ip });
            }
            progress
                .planned
                .fetch_add(chunk.len() as u64 * order.len() as u64, Ordering::Relaxed);
            let plan = ChunkPlan {
                hosts: &chunk,
                order: &order,
                ports,
                record_outcomes,
                canaries: &canaries,
            };
            self.scan_chunk(plan, &progress, &sink, &mut summary).await?;
        }
        summary.elapsed = started.elapsed();
        metrics::counter!("portwatch_probe_connects_total", "outcome" => "open")
            .increment(u64::from(summary.counts.open));
        metrics::counter!("portwatch_probe_connects_total", "outcome" => "closed")
            .increment(u64::from(summary.counts.closed));
        metrics::counter!("portwatch_probe_connects_total", "outcome" => "filtered")
            .increment(u64::from(summary.counts.filtered));
        metrics::counter!("portwatch_probe_connects_total", "outcome" => "unreachable")
            .increment(u64::from(summary.counts.unreachable));
        metrics::counter!("portwatch_probe_connects_total", "outcome" => "error")
            .increment(u64::from(summary.counts.error));
        metrics::counter!("portwatch_probe_local_retries_total").increment(summary.local_retries);
        Ok(summary)
    }

    async fn scan_chunk(
        &self,
        plan: ChunkPlan<'_>,
        progress: &Arc<ScanProgress>,
        sink: &mpsc::Sender<HostResult>,
        summary: &mut ScanSummary,
    ) -> Result<(), ScanError> {
        let ChunkPlan {
            hosts,
            order,
            ports,
            record_outcomes,
            canaries,
        } = plan;
        let total = hosts.len() * order.len();
        let mut accs: Vec<HostAcc> = hosts
            .iter()
            .map(|_| HostAcc::new(order.len(), canaries.clone(), record_outcomes))
            .collect();
        let mut in_flight: JoinSet<ProbeDone> = JoinSet::new();
        let mut ids: HashMap<tokio::task::Id, (usize, u16)> = HashMap::new();
        let mut next = 0usize;
        let mut pending: Option<(usize, u16)> = None;
        // Additive-increase / multiplicative-decrease on local resource pressure.
        let mut cap = self.max_in_flight;
        let timeout = self.cfg.timeout;
        // Probes interleave the chunk's hosts round-robin, so each host gets
        // rate / hosts. When the per-host cap is the tighter bound, this chunk runs
        // at per_host_rate x hosts instead of the global rate.
        let chunk_limiter = self.cfg.per_host_rate.and_then(|per_host| {
            let chunk_rate = u64::from(per_host.get()).saturating_mul(hosts.len() as u64);
            (chunk_rate < u64::from(self.cfg.rate.get()))
                .then(|| Pacer::new(NonZeroU32::new(chunk_rate as u32).unwrap_or(NonZeroU32::MIN)))
        });
        // A probe needs a token from the chunk's pacer (if any) and the shared one.
        let take_now = || chunk_limiter.as_ref().is_none_or(Pacer::try_take) && self.limiter.try_take();
        let take = || async {
            if let Some(chunk) = &chunk_limiter {
                chunk.take().await;
            }
            self.limiter.take().await;
        };

        loop {
            // Start as many probes as concurrency and the rate allow, without waiting.
            while in_flight.len() < cap {
                let probe = match pending.take() {
                    Some(p) => p,
                    None if next < total => {
                        let p = (next % hosts.len(), order[next / hosts.len()]);
                        next += 1;
                        p
                    }
                    None => break,
                };
                if !take_now() {
                    pending = Some(probe);
                    break;
                }
                self.spawn_probe(&mut in_flight, &mut ids, &mut accs, hosts, probe, timeout);
                progress.sent.fetch_add(1, Ordering::Relaxed);
            }
            if in_flight.is_empty() && pending.is_none() && next >= total {
                break;
            }
            tokio::select! {
                biased;
                joined = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let (host, port, outcome, rtt, retries) = match joined {
                        Some(Ok((id, done))) => {
                            ids.remove(&id);
                            (done.host, done.port, done.outcome, done.rtt, done.retries)
                        }
                        Some(Err(err)) => {
                            // A probe task panicked or was cancelled: record the port as
                            // an error (not covered) so the host still completes.
                            let Some((host, port)) = ids.remove(&err.id()) else { continue };
                            tracing::error!(%port, error = %err, "probe task failed");
                            (host, port, ProbeOutcome::Error, None, 0)
                        }
                        None => continue,
                    };
                    summary.local_retries += u64::from(retries);
                    if retries > 0 {
                        cap = (cap * 3 / 4).max(16);
                    } else if cap < self.max_in_flight {
                        cap += 1;
                    }
                    progress.done.fetch_add(1, Ordering::Relaxed);
                    if outcome == ProbeOutcome::Open {
                        progress.open.fetch_add(1, Ordering::Relaxed);
                    }
                    let acc = &mut accs[host];
                    acc.record(port, outcome, rtt);
                    if acc.remaining == 0 {
                        let result = acc.finish(hosts[host], ports);
                        summary.hosts += 1;
                        summary.probes += order.len() as u64;
                        summary.counts.merge(&result.counts);
                        progress.hosts_done.fetch_add(1, Ordering::Relaxed);
                        sink.send(result).await.map_err(|_| ScanError::ReceiverClosed)?;
                    }
                }
                _ = take(), if pending.is_some() && in_flight.len() < cap => {
                    // take() got the tokens for us: start the waiting probe now.
                    if let Some(probe) = pending.take() {
                        self.spawn_probe(&mut in_flight, &mut ids, &mut accs, hosts, probe, timeout);
                        progress.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(())
    }

    fn spawn_probe(
        &self,
        in_flight: &mut JoinSet<ProbeDone>,
        ids: &mut HashMap<tokio::task::Id, (usize, u16)>,
        accs: &mut [HostAcc],
        hosts: &[IpAddr],
        (host, port): (usize, u16),
        timeout: Duration,
    ) {
        accs[host].start();
        let source = self.cfg.source;
        let addr = SocketAddr::new(hosts[host], port);
        let handle = in_flight.spawn(async move {
            let (outcome, rtt, retries) = probe_with_retries(addr, timeout, source).await;
            ProbeDone {
                host,
                port,
                outcome,
                rtt,
                retries,
            }
        });
        ids.insert(handle.id(), (host, port));
    }
}

/// One chunk of hosts and the shuffled port order to probe them in.
struct ChunkPlan<'a> {
    hosts: &'a [IpAddr],
    order: &'a Arc<[u16]>,
    ports: &'a PortSet,
    record_outcomes: bool,
    canaries: &'a Arc<Canaries>,
}

struct ProbeDone {
    host: usize,
    port: u16,
    outcome: ProbeOutcome,
    rtt: Option<Duration>,
    retries: u32,
}

struct HostAcc {
    remaining: usize,
    canaries: Arc<Canaries>,
    canary_open: usize,
    keep_outcomes: bool,
    started_at: Option<Timestamp>,
    open: Vec<OpenPort>,
    errors: Vec<u16>,
    counts: OutcomeCounts,
    outcomes: Vec<(u16, ProbeOutcome, Option<Duration>)>,
}

impl HostAcc {
    fn new(ports: usize, canaries: Arc<Canaries>, keep_outcomes: bool) -> Self {
        Self {
            remaining: ports,
            canaries,
            canary_open: 0,
            keep_outcomes,
            started_at: None,
            open: Vec::new(),
            errors: Vec::new(),
            counts: OutcomeCounts::default(),
            outcomes: Vec::new(),
        }
    }

    fn start(&mut self) {
        if self.started_at.is_none() {
            self.started_at = Some(Utc::now());
        }
    }

    fn record(&mut self, port: u16, outcome: ProbeOutcome, rtt: Option<Duration>) {
        self.remaining -= 1;
        if outcome == ProbeOutcome::Open && self.canaries.deciding.binary_search(&port).is_ok() {
            self.canary_open += 1;
        }
        if self.canaries.is_extra(port) {
            return; // a canary nobody asked about: not part of the result
        }
        self.counts.add(outcome);
        match outcome {
            ProbeOutcome::Open => self.open.push(OpenPort { port, rtt }),
            ProbeOutcome::Error => self.errors.push(port),
            _ => {}
        }
        if self.keep_outcomes {
            self.outcomes.push((port, outcome, rtt));
        }
    }

    fn finish(&mut self, ip: IpAddr, ports: &PortSet) -> HostResult {
        let now = Utc::now();
        let mut open = std::mem::take(&mut self.open);
        open.sort_by_key(|o| o.port);
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.sort_by_key(|o| o.0);
        let wildcard = self.canaries.is_wildcard(self.canary_open);
        let unverified = if wildcard { open.len() as u32 } else { 0 };
        if wildcard {
            // Every port "answers": no single answer means anything.
            open.clear();
            self.counts.open = 0;
        }
        HostResult {
            ip,
            started_at: self.started_at.unwrap_or(now),
            finished_at: now,
            // Ports that could not be probed say nothing about the target, and
            // neither does any port of a wildcard host.
            covered: if wildcard {
                PortSet::empty()
            } else {
                ports.without(&self.errors)
            },
            open,
            counts: self.counts,
            outcomes,
            evidence: Evidence::Handshake,
            wildcard,
            unverified,
        }
    }
}

/// Attempts before a local resource error is given up on for one port.
const LOCAL_RETRIES: u32 = 8;

async fn probe_with_retries(
    addr: SocketAddr,
    timeout: Duration,
    source: Option<IpAddr>,
) -> (ProbeOutcome, Option<Duration>, u32) {
    let mut backoff = Duration::from_millis(2);
    for attempt in 0..=LOCAL_RETRIES {
        match connect_once(addr, timeout, source).await {
            Attempt::Done(outcome, rtt) => return (outcome, rtt, attempt),
            Attempt::LocalPressure(err) => {
                if attempt == LOCAL_RETRIES {
                    tracing::warn!(%addr, error = %err, "giving up on port after local resource errors");
                    return (ProbeOutcome::Error, None, attempt);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Attempt::LocalFailure(err) => {
                tracing::debug!(%addr, error = %err, "probe could not be sent");
                return (ProbeOutcome::Error, None, attempt);
            }
        }
    }
    (ProbeOutcome::Error, None, LOCAL_RETRIES)
}

enum Attempt {
    Done(ProbeOutcome, Option<Duration>),
    /// Out of file descriptors, buffers or ephemeral ports: wait and retry.
    LocalPressure(std::io::Error),
    /// The probe cannot be sent at all (e.g. a local firewall forbids it).
    LocalFailure(std::io::Error),
}

fn classify(err: std::io::Error) -> Attempt {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) | Some(libc::ECONNRESET) => Attempt::Done(ProbeOutcome::Closed, None),
        Some(libc::ETIMEDOUT) => Attempt::Done(ProbeOutcome::Filtered, None),
        Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EHOSTDOWN) => {
            Attempt::Done(ProbeOutcome::Unreachable, None)
        }
        Some(
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL | libc::EAGAIN,
        ) => Attempt::LocalPressure(err),
        _ => Attempt::LocalFailure(err),
    }
}

async fn connect_once(addr: SocketAddr, timeout: Duration, source: Option<IpAddr>) -> Attempt {
    let socket = match Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    ) {
        Ok(s) => s,
        Err(e) => return classify(e),
    };
    // See the module docs: RST on close, no TIME_WAIT.
    if let Err(e) = socket.set_linger(Some(Duration::ZERO)) {
        return Attempt::LocalFailure(e);
    }
    if let Some(src) = source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        if let Err(e) = socket.bind(&SocketAddr::new(src, 0).into()) {
            return classify(e);
        }
    }
    let t0 = Instant::now();
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return classify(e),
    }
    let std_stream: std::net::TcpStream = socket.into();
    let stream = match tokio::net::TcpStream::from_std(std_stream) {
        Ok(s) => s,
        Err(e) => return classify(e),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.writable()).await {
            Err(_) => return Attempt::Done(ProbeOutcome::Filtered, None),
            Ok(Err(e)) => return classify(e),
            Ok(Ok(())) => {}
        }
        let rtt = t0.elapsed();
        match stream.take_error() {
            Ok(Some(e)) => return classify(e),
            Err(e) => return classify(e),
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => {
                if stream.local_addr().ok() == Some(addr) {
                    // Self-connect: we connected to our own ephemeral port.
                    return Attempt::Done(ProbeOutcome::Closed, None);
                }
                return Attempt::Done(ProbeOutcome::Open, Some(rtt));
            }
            // Spurious readiness: still connecting.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
            Err(e) => return classify(e),
        }
    }
}

/// Raise the soft open-file limit to the hard limit; returns the limit in force.
fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn loopback_scope() -> Scope {
        Scope::new(vec!["127.0.0.0/8".parse().expect("net")], 1 << 24)
    }

    async fn run(
        targets: Vec<IpAddr>,
        ports: &PortSet,
        cfg: ConnectConfig,
    ) -> (Vec<HostResult>, ScanSummary) {
        let scanner = ConnectScanner::new(cfg);
        let (tx, mut rx) = mpsc::channel(64);
        let progress = Arc::new(ScanProgress::default());
        let ports = ports.clone();
        let handle = tokio::spawn(async move {
            let scope = loopback_scope();
            let request = ScanRequest {
                ports: &ports,
                scope: &scope,
                record_outcomes: true,
                progress,
                canaries: false,
            };
            scanner.scan(targets.into_iter(), request, tx).await
        });
        let mut results = Vec::new();
        while let Some(r) = rx.recv().await {
            results.push(r);
        }
        let summary = handle.await.expect("join").expect("scan");
        results.sort_by_key(|r| r.ip);
        (results, summary)
    }

    // Only ports of listeners this test opened are probed (a handful on 127.0.0.1 and
    // their neighbours), never a wide range of the machine's loopback.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finds_own_listeners_and_reports_neighbours_closed() {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind");
        let b = TcpListener::bind("127.0.0.1:0").expect("bind");
        let pa = a.local_addr().expect("addr").port();
        let pb = b.local_addr().expect("addr").port();
        // A port we just released: almost certainly closed now.
        let c = TcpListener::bind("127.0.0.1:0").expect("bind");
        let pc = c.local_addr().expect("addr").port();
        drop(c);
        let ports = PortSet::from_ports([pa, pb, pc]);
        let (results, summary) = run(
            vec!["127.0.0.1".parse().expect("ip")],
            &ports,
            ConnectConfig::default(),
        )
        .await;
        assert_eq!(results.len(), 1);
        let r = &results[0];
        let mut expected = vec![pa, pb];
        expected.sort_unstable();
        assert_eq!(r.open.iter().map(|o| o.port).collect::<Vec<_>>(), expected);
        assert_eq!(r.counts.open, 2);
        assert_eq!(r.counts.closed, 1);
        assert_eq!(summary.probes, 3);
        assert_eq!(r.covered, ports);
        assert_eq!(r.outcomes.len(), 3);
        assert!(r.started_at <= r.finished_at);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn out_of_scope_targets_are_refused_before_any_probe() {
        let scanner = ConnectScanner::new(ConnectConfig::default());
        let (tx, _rx) = mpsc::channel(4);
        let progress = Arc::new(ScanProgress::default());
        let ports = PortSet::from_ports([80]);
        let scope = loopback_scope();
        let request = ScanRequest {
            ports: &ports,
            scope: &scope,
            record_outcomes: false,
            progress: progress.clone(),
            canaries: false,
        };
        let err = scanner
            .scan(["192.0.2.1".parse().expect("ip")].into_iter(), request, tx)
            .await
            .expect_err("out of scope");
        assert!(matches!(err, ScanError::OutOfScope { .. }));
        assert_eq!(progress.sent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_paces_probes() {
        // 40 probes at 200/s with a burst of 2 must take about 0.2 s, not ~0.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ips: Vec<IpAddr> = (1..=40)
            .map(|i| format!("127.0.{i}.1").parse().expect("ip"))
            .collect();
        let cfg = ConnectConfig {
            rate: NonZeroU32::new(200).expect("nonzero"),
            ..ConnectConfig::default()
        };
        let t0 = Instant::now();
        let (results, _) = run(ips, &PortSet::from_ports([port]), cfg).await;
        let elapsed = t0.elapsed();
        assert_eq!(results.len(), 40);
        assert!(
            elapsed >= Duration::from_millis(150),
            "40 probes at 200/s took {elapsed:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scanners_sharing_a_pacer_share_its_rate() {
        // Two scanners, 40 probes each, one pacer of 200/s: at least ~0.4 s in all,
        // where two pacers of their own would take ~0.2 s.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let rate = NonZeroU32::new(200).expect("nonzero");
        let pacer = Pacer::new(rate);
        let cfg = ConnectConfig {
            rate,
            pacer: Some(pacer),
            ..ConnectConfig::default()
        };
        let ips = |third: u8| -> Vec<IpAddr> {
            (1..=40)
                .map(|i| format!("127.{third}.{i}.1").parse().expect("ip"))
                .collect()
        };
        let t0 = Instant::now();
        let ports = PortSet::from_ports([port]);
        let (a, b) = tokio::join!(run(ips(1), &ports, cfg.clone()), run(ips(2), &ports, cfg));
        let elapsed = t0.elapsed();
        assert_eq!(a.0.len() + b.0.len(), 80);
        assert!(
            elapsed >= Duration::from_millis(350),
            "80 probes at a shared 200/s took {elapsed:?}"
        );
    }
}
