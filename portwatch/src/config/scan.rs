//! `[scan]`: how probes are sent (technique, rates, timeouts, port lists).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use portwatch_events::PortSet;
use portwatch_probes::liveness::LIVENESS_PORTS;
use portwatch_probes::{ConnectConfig, Pacer, Pinger, ScanMode, Scanner, SynConfig, SynError};
use portwatch_projections::policy;
use serde::Deserialize;

use super::{
    parse_duration, ConfigError, Origin, DEFAULT_CONCURRENCY, DEFAULT_MAX_RATE, DEFAULT_RATE,
    DEFAULT_TIMEOUT, DEFAULT_TRIES, MAX_RATE,
};

/// `[scan]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScan {
    /// `auto` (SYN when privileged, else connect), `syn` or `connect`. Default: auto.
    pub mode: Option<String>,
    /// Probes per second, global. Default: 10000.
    pub rate: Option<i64>,
    /// Hard cap on the rate: nothing (config or `--rate`) may exceed it.
    /// Default: 1000000.
    pub max_rate: Option<i64>,
    /// SYN mode: most passes over unanswered probes (first try included). Default: 3.
    pub tries: Option<i64>,
    /// Source address of probes (must be an address of this machine). Each zone's
    /// probe node sets its own. Default: chosen by route.
    pub source_ip: Option<String>,
    /// Most probes per second to any one host. Default: no per-host cap.
    pub per_host_rate: Option<i64>,
    /// Handshake timeout, human duration. Default: "1500ms".
    pub timeout: Option<String>,
    /// Most attempts in flight. Default: 2048.
    pub concurrency: Option<i64>,
    /// Port list of the high-risk task. Default: the built-in policy.
    pub high_risk_ports: Option<String>,
    /// Ports of TCP liveness pings. Default: "22,80,443,3389,8080,8443".
    pub liveness_ports: Option<String>,
}

impl RawScan {
    /// Apply defaults and check every key.
    pub(super) fn validate(self, at: &Origin<'_>) -> Result<ScanSettings, ConfigError> {
        let invalid = |key: &str, value: &str, reason: &str| at.invalid(key, value, reason);
        let mode = match &self.mode {
            None => ScanMode::Auto,
            Some(text) => text
                .parse()
                .map_err(|e: String| invalid("scan.mode", &format!("{text:?}"), &e))?,
        };
        let tries = match self.tries {
            None => DEFAULT_TRIES,
            Some(t) => check_tries(t).map_err(|r| invalid("scan.tries", &t.to_string(), &r))?,
        };
        let max_rate = match self.max_rate {
            None => DEFAULT_MAX_RATE,
            Some(r) if r < 1 || r > i64::from(MAX_RATE) => {
                return Err(invalid(
                    "scan.max_rate",
                    &r.to_string(),
                    &format!("must be between 1 and {MAX_RATE} probes per second"),
                ))
            }
            Some(r) => r as u32,
        };
        let per_host_rate = match self.per_host_rate {
            None => None,
            Some(r) if r < 1 || r > i64::from(max_rate) => {
                return Err(invalid(
                    "scan.per_host_rate",
                    &r.to_string(),
                    &format!("must be between 1 and scan.max_rate = {max_rate} probes per second"),
                ))
            }
            Some(r) => NonZeroU32::new(r as u32),
        };
        let source_ip = match &self.source_ip {
            None => None,
            Some(text) => Some(
                text.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| invalid("scan.source_ip", &format!("{text:?}"), "not an IP address"))?,
            ),
        };
        let rate = match self.rate {
            None => DEFAULT_RATE.min(max_rate),
            Some(r) => check_rate(r, max_rate)
                .map_err(|e| invalid("scan.rate", &r.to_string(), &e))?
                .get(),
        };
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => {
                check_timeout(text).map_err(|r| invalid("scan.timeout", &format!("{text:?}"), &r))?
            }
        };
        let concurrency = match self.concurrency {
            None => DEFAULT_CONCURRENCY,
            Some(c) => check_concurrency(c).map_err(|r| invalid("scan.concurrency", &c.to_string(), &r))?,
        };
        let port_list = |key: &str, value: &Option<String>, default: PortSet| match value {
            None => Ok(default),
            Some(text) => PortSet::parse(text).map_err(|e| invalid(key, &format!("{text:?}"), &e.reason)),
        };
        let high_risk_ports = port_list(
            "scan.high_risk_ports",
            &self.high_risk_ports,
            policy::high_risk_ports(),
        )?;
        let liveness_ports = port_list(
            "scan.liveness_ports",
            &self.liveness_ports,
            PortSet::from_ports(LIVENESS_PORTS.iter().copied()),
        )?;
        Ok(ScanSettings {
            mode,
            tries,
            source_ip,
            per_host_rate,
            pacer: Pacer::new(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN)),
            max_rate,
            rate: NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN),
            timeout,
            concurrency,
            high_risk_ports,
            liveness_ports,
        })
    }
}

/// Checked scan settings.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Technique.
    pub mode: ScanMode,
    /// Probes per second.
    pub rate: NonZeroU32,
    /// Hard cap on `rate`.
    pub max_rate: u32,
    /// SYN passes.
    pub tries: u32,
    /// Probe source address.
    pub source_ip: Option<IpAddr>,
    /// Per-host cap.
    pub per_host_rate: Option<NonZeroU32>,
    /// The one pacer every scanner and pinger built from these settings shares, so
    /// `rate` caps all concurrent jobs together.
    pub pacer: Pacer,
    /// Handshake timeout.
    pub timeout: Duration,
    /// In-flight cap.
    pub concurrency: usize,
    /// High-risk task ports.
    pub high_risk_ports: PortSet,
    /// Liveness ports.
    pub liveness_ports: PortSet,
}

impl ScanSettings {
    /// Settings of the connect scanner.
    pub fn connect_config(&self) -> ConnectConfig {
        ConnectConfig {
            rate: self.rate,
            timeout: self.timeout,
            concurrency: self.concurrency,
            source: self.source_ip,
            per_host_rate: self.per_host_rate,
            pacer: Some(self.pacer.clone()),
        }
    }

    /// Settings of the SYN scanner.
    pub fn syn_config(&self) -> SynConfig {
        SynConfig {
            rate: self.rate,
            per_host_rate: self.per_host_rate,
            wait: self.timeout,
            max_passes: self.tries,
            source: self.source_ip,
            pacer: Some(self.pacer.clone()),
        }
    }

    /// Check that `source_ip` (if set) is an address of this machine: binding to
    /// it is the test the scanners would fail later, one probe at a time.
    pub fn check_source(&self) -> Result<(), crate::InputError> {
        let Some(ip) = self.source_ip else { return Ok(()) };
        std::net::UdpSocket::bind((ip, 0)).map(drop).map_err(|e| {
            crate::InputError(format!(
                "scan.source_ip = \"{ip}\": not an address of this machine ({e})"
            ))
        })
    }

    /// The liveness pinger these settings ask for.
    pub fn pinger(&self) -> Result<Pinger, SynError> {
        Pinger::new(self.mode, self.syn_config(), self.connect_config())
    }

    /// The port scanner these settings ask for.
    pub fn scanner(&self) -> Result<Scanner, SynError> {
        Scanner::new(self.mode, self.syn_config(), self.connect_config())
    }
}

/// Bounds shared by the config file and the command line's overrides: each returns
/// the checked value, or why it is refused (the caller names the key or flag).
/// A probe rate: 1 to `max_rate`.
pub fn check_rate(rate: i64, max_rate: u32) -> Result<NonZeroU32, String> {
    match u32::try_from(rate)
        .ok()
        .filter(|r| *r <= max_rate)
        .and_then(NonZeroU32::new)
    {
        Some(r) => Ok(r),
        None => Err(format!(
            "must be between 1 and scan.max_rate = {max_rate} probes per second"
        )),
    }
}

/// SYN passes: 1 to 10.
pub fn check_tries(tries: i64) -> Result<u32, String> {
    match tries {
        1..=10 => Ok(tries as u32),
        _ => Err("must be between 1 and 10".to_string()),
    }
}

/// A probe timeout: a human duration from 10ms to 60s.
pub fn check_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
        return Err("must be between 10ms and 60s".to_string());
    }
    Ok(d)
}

/// Probes in flight: 1 to 65536.
pub fn check_concurrency(concurrency: i64) -> Result<usize, String> {
    match concurrency {
        1..=65_536 => Ok(concurrency as usize),
        _ => Err("must be between 1 and 65536".to_string()),
    }
}
