//! `portwatch scan`: one ad-hoc scan, now, printed as it goes.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use portwatch_events::{JobId, Origin, PortSet, RiskClass, Task};
use portwatch_ingest::{EmbeddedLog, EventLog};
use portwatch_probes::detect::{detect, Detection};
use portwatch_probes::{HostResult, ScanProgress, ScanRequest};
use serde::Serialize;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::cli::ScanArgs;
use crate::config::{check_concurrency, check_rate, check_timeout, check_tries, Config, ScanSettings};
use crate::output::{json_line, service_words};
use crate::{InputError, Shutdown};
use portwatch_work::jobs::{detection_class, Appender};

/// One open port with what detection found on it (`scan --service --json`): the
/// plain line (its `risk` is the detected class) and the detection.
#[derive(Debug, Serialize)]
pub struct ServiceFinding {
    #[serde(flatten)]
    pub port: Finding,
    #[serde(flatten)]
    pub detection: Detection,
    /// The class the policy gives what detection found (the same as `risk`).
    pub class: RiskClass,
}

/// One open port as `scan --json` prints it.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// Host.
    pub ip: std::net::IpAddr,
    /// Port.
    pub port: u16,
    /// Always `tcp` for connect scans.
    pub proto: &'static str,
    /// Always `open`: only open ports are printed.
    pub state: &'static str,
    /// Handshake round-trip time (connect scans only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The risk class: `high_risk_port` or `risk_port` from the port number; with
    /// `--service`, the detected class.
    pub risk: RiskClass,
}

/// A host whose "open" answers are not trusted, as `scan --json` prints it: a script
/// reading the findings sees why a host it expected ports from shows none.
#[derive(Debug, Serialize)]
pub struct UnverifiedHost {
    /// Host.
    pub ip: std::net::IpAddr,
    /// Always `unverified`.
    pub state: &'static str,
    /// `wildcard` (it answered on every port, canaries included: SYN proxy, tarpit,
    /// some CDNs) or `untrusted_answers` (SYN-ACKs no real TCP stack sends).
    pub reason: &'static str,
    /// Ports that looked open but were not reported.
    pub unverified: u32,
    /// Outcome counts of the host's probes.
    pub counts: portwatch_events::OutcomeCounts,
}

impl UnverifiedHost {
    /// The line for `result`, if any of its answers were not trusted.
    fn of(result: &HostResult) -> Option<Self> {
        let reason = if result.wildcard {
            "wildcard"
        } else if result.unverified > 0 {
            "untrusted_answers"
        } else {
            return None;
        };
        Some(Self {
            ip: result.ip,
            state: "unverified",
            reason,
            unverified: result.unverified,
            counts: result.counts,
        })
    }
}

/// The config's scan settings with the command line's overrides applied.
fn settings(cfg: &Config, args: &ScanArgs) -> Result<ScanSettings, InputError> {
    let mut scan = cfg.scan.clone();
    if let Some(mode) = &args.mode {
        scan.mode = mode.parse().map_err(|e| InputError(format!("--mode: {e}")))?;
    }
    if let Some(r) = args.rate {
        scan.rate = check_rate(r, scan.max_rate).map_err(|e| InputError(format!("--rate {r}: {e}")))?;
    }
    if let Some(t) = args.tries {
        scan.tries = check_tries(t).map_err(|e| InputError(format!("--tries {t}: {e}")))?;
    }
    if let Some(text) = &args.timeout {
        scan.timeout = check_timeout(text).map_err(|e| InputError(format!("--timeout `{text}`: {e}")))?;
    }
    if let Some(c) = args.concurrency {
        scan.concurrency = check_concurrency(c).map_err(|e| InputError(format!("--concurrency {c}: {e}")))?;
    }
    // The rate may have changed: a pacer of its own for this command.
    scan.pacer = portwatch_probes::Pacer::new(scan.rate);
    Ok(scan)
}

/// Run the scan and print what it finds.
pub async fn run(cfg: Config, args: ScanArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let targets = cfg.scope.check(&args.targets, args.allow_large)?;
    let ports = match &args.ports {
        Some(text) => PortSet::parse(text).map_err(|e| InputError(format!("-p: {e}")))?,
        None => cfg.scan.high_risk_ports.clone(),
    };
    let settings = settings(&cfg, &args)?;
    settings.check_source()?;
    let scanner = settings
        .scanner()
        .map_err(|e| InputError(format!("scan mode syn: {e}")))?;
    let mode_name = match scanner.mode() {
        portwatch_probes::ScanMode::Syn => "syn",
        _ => "connect",
    };
    let appender = if args.record {
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(cfg.events_path())?);
        Some(Appender::new(log, Arc::new(Notify::new())))
    } else {
        None
    };
    let origin = Origin {
        node: cfg.node.clone(),
        job: JobId::new(),
        task: Task::Adhoc,
    };

    let progress = Arc::new(ScanProgress::default());
    let planned = u64::try_from(targets.len())
        .unwrap_or(u64::MAX)
        .saturating_mul(u64::from(ports.len()));
    let bar = progress_bar(planned);
    let ticker = {
        let bar = bar.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(progress.done.load(Ordering::Relaxed));
                bar.set_message(format!("{} open", progress.open.load(Ordering::Relaxed)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let (tx, mut rx) = mpsc::channel::<HostResult>(64);
    let scope = cfg.scope.clone();
    let scan_ports = ports.clone();
    let scan_targets = targets.clone();
    let scan_progress = progress.clone();
    let scan = tokio::spawn(async move {
        let request = ScanRequest {
            ports: &scan_ports,
            scope: &scope,
            record_outcomes: false,
            progress: scan_progress,
            canaries: true,
        };
        scanner.scan(scan_targets.iter(), request, tx).await
    });

    let started = std::time::Instant::now();
    let mut detections: JoinSet<(HostPort, Detection)> = JoinSet::new();
    let detect_slots = Arc::new(Semaphore::new(cfg.service.concurrency));
    let mut stdout = std::io::stdout().lock();
    let mut open_total = 0u64;
    let mut hosts = 0u64;
    let mut wildcards = 0u64;
    tokio::pin!(shutdown);
    loop {
        let result = tokio::select! {
            r = rx.recv() => r,
            _ = &mut shutdown => {
                scan.abort();
                ticker.abort();
                bar.finish_and_clear();
                return Err(anyhow::anyhow!("interrupted after {hosts} hosts; {open_total} open ports printed so far"));
            }
        };
        let Some(result) = result else { break };
        hosts += 1;
        if result.wildcard {
            wildcards += 1;
            tracing::warn!(
                ip = %result.ip,
                unverified = result.unverified,
                "host answers on every port (wildcard: SYN proxy, tarpit or similar); none of its ports is reported open"
            );
        }
        open_total += result.open.len() as u64;
        if args.service {
            for open in &result.open {
                let addr = std::net::SocketAddr::new(result.ip, open.port);
                let (opts, slots) = (cfg.service.detect.clone(), detect_slots.clone());
                let rtt_ms = open.rtt.map(|d| d.as_secs_f64() * 1000.0);
                detections.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    ((addr, rtt_ms), detect(addr, &opts).await)
                });
            }
        }
        bar.suspend(|| -> std::io::Result<()> {
            if args.json {
                if let Some(line) = UnverifiedHost::of(&result) {
                    json_line(&mut stdout, &line)?;
                }
            }
            if args.service {
                return Ok(()); // printed once detected
            }
            for open in &result.open {
                if args.json {
                    json_line(
                        &mut stdout,
                        &Finding {
                            ip: result.ip,
                            port: open.port,
                            proto: "tcp",
                            state: "open",
                            rtt_ms: open.rtt.map(|d| d.as_secs_f64() * 1000.0),
                            risk: cfg.service.policy.classify(open.port, None, false),
                        },
                    )?;
                } else {
                    let name = portwatch_projections::policy::high_risk_service(open.port)
                        .map(|s| format!("  high-risk ({s}?)"))
                        .unwrap_or_default();
                    writeln!(stdout, "{:<40} {:>5}/tcp  open{name}", result.ip, open.port)?;
                }
            }
            stdout.flush()
        })?;
        if let Some(appender) = &appender {
            appender.append(result.to_events(&origin)).await?;
        }
    }
    let summary = scan.await??;
    let class_of = |d: &Detection| detection_class(&cfg.service.policy, d);
    let detected = detections.len();
    let mut findings = Vec::with_capacity(detected);
    while let Some(joined) = detections.join_next().await {
        findings.push(joined?);
    }
    ticker.abort();
    bar.finish_and_clear();
    findings.sort_by_key(|((addr, _), _)| (addr.ip(), addr.port()));
    for ((addr, rtt_ms), detection) in findings {
        if let Some(appender) = &appender {
            appender
                .append(vec![detail_event(
                    &origin,
                    &detection,
                    rtt_ms,
                    class_of(&detection),
                )])
                .await?;
        }
        if args.json {
            json_line(
                &mut stdout,
                &ServiceFinding {
                    port: Finding {
                        ip: addr.ip(),
                        port: addr.port(),
                        proto: "tcp",
                        state: "open",
                        rtt_ms,
                        risk: class_of(&detection),
                    },
                    class: class_of(&detection),
                    detection,
                },
            )?;
        } else {
            writeln!(stdout, "{}", service_line(&detection, class_of(&detection)))?;
        }
    }
    stdout.flush()?;
    let secs = started.elapsed().as_secs_f64();
    let line = format!(
        "scanned {} host(s) x {} port(s) in {:.2}s ({:.0} probes/s, {}): {} open, {} closed, {} filtered, {} unreachable, {} not probed, {} wildcard host(s){}",
        summary.hosts,
        ports.len(),
        secs,
        summary.probes as f64 / secs.max(1e-9),
        mode_name,
        summary.counts.open,
        summary.counts.closed,
        summary.counts.filtered,
        summary.counts.unreachable,
        summary.counts.error,
        wildcards,
        if args.record { format!("; recorded as job {}", origin.job) } else { String::new() },
    );
    // The summary is for the person at the terminal; stdout stays pure findings.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{line}");
    }
    Ok(())
}

type HostPort = (std::net::SocketAddr, Option<f64>);

/// A table line: address, service, product and version, class, panels.
fn service_line(d: &Detection, class: RiskClass) -> String {
    let what = service_words(Some(&d.service), d.product.as_deref(), d.version.as_deref());
    let tls = if d.tls.is_some() { " (tls)" } else { "" };
    let panels = d
        .panels
        .iter()
        .map(|p| format!("  panel: {} at {}", p.name, p.path))
        .collect::<String>();
    let reason = d
        .reason
        .as_deref()
        .map(|r| format!("  ({r})"))
        .unwrap_or_default();
    format!(
        "{:<40} {:>5}/tcp  open  {:<40} {}{tls}{panels}{}",
        d.addr.ip(),
        d.addr.port(),
        what,
        class.as_str(),
        if d.service == "unknown" {
            reason
        } else {
            String::new()
        }
    )
}

/// The port_detail event of a detection.
pub fn detail_event(
    origin: &Origin,
    d: &Detection,
    rtt_ms: Option<f64>,
    class: RiskClass,
) -> portwatch_events::Event {
    portwatch_events::Event::new(
        origin,
        chrono::Utc::now(),
        portwatch_events::Observation::PortDetail(d.to_detail(rtt_ms, class)),
    )
}

fn progress_bar(planned: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(planned), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} probes  {per_sec}  ETA {eta}  {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
