//! The observation schema: what a probe saw, as an immutable, versioned event.
//!
//! Every stage of portwatch speaks this crate. Probes build [`Event`]s, the event log
//! (embedded SQLite or Kafka) stores them as JSON, projections fold them into state,
//! and SIEM consumers read them straight off the log. The JSON layout is documented in
//! `events/SCHEMA.md`; changing it means bumping [`SCHEMA_VERSION`].
//!
//! The crate does no I/O on purpose: it must be usable from a pure fold, a probe, a
//! Kafka consumer and a test alike.

mod ports;
mod risk;

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod alert;
pub mod control;
pub mod decision;
pub mod redact;

pub use ports::{PortSet, PortSetError};
pub use risk::RiskClass;

/// The schema version written into every event's `v` field. Readers refuse versions
/// they do not know instead of guessing at their meaning.
pub const SCHEMA_VERSION: u16 = 1;

/// Event timestamps are UTC; the JSON form is RFC 3339.
pub type Timestamp = DateTime<Utc>;

/// Unique event id (UUIDv7: time-ordered, so ids sort roughly by creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Id of the job (one run of one task over its targets) that produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The monitoring tasks of the policy (MISSION.md), plus operator-started ad-hoc jobs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// 0: which assets answer at all.
    Liveness,
    /// 1: all 65535 ports of live hosts.
    FullPorts,
    /// 2: the high-risk port list on live hosts.
    HighRiskPorts,
    /// 3: what runs on known open ports.
    ServiceDetection,
    /// 4: are the known open ports still open.
    PortRecheck,
    /// 5: web admin consoles on open HTTP(S) ports.
    AdminPanels,
    /// 6: high-risk ports of hosts that looked dead (fallback).
    OfflineHighRiskPorts,
    /// 7: all ports of hosts that looked dead (fallback).
    OfflineFullPorts,
    /// 8: all ports of every asset, dead or alive (fallback).
    AllAssetsFullPorts,
    /// A job an operator started by hand.
    Adhoc,
}

impl Task {
    /// Every scheduled task, in policy order.
    pub const SCHEDULED: [Task; 9] = [
        Task::Liveness,
        Task::FullPorts,
        Task::HighRiskPorts,
        Task::ServiceDetection,
        Task::PortRecheck,
        Task::AdminPanels,
        Task::OfflineHighRiskPorts,
        Task::OfflineFullPorts,
        Task::AllAssetsFullPorts,
    ];

    /// The snake_case name used in config, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Liveness => "liveness",
            Task::FullPorts => "full_ports",
            Task::HighRiskPorts => "high_risk_ports",
            Task::ServiceDetection => "service_detection",
            Task::PortRecheck => "port_recheck",
            Task::AdminPanels => "admin_panels",
            Task::OfflineHighRiskPorts => "offline_high_risk_ports",
            Task::OfflineFullPorts => "offline_full_ports",
            Task::AllAssetsFullPorts => "all_assets_full_ports",
            Task::Adhoc => "adhoc",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transport protocol of a port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Lower-case name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("unknown protocol `{other}` (expected tcp or udp)")),
        }
    }
}

/// What one probe of one port found. Outcomes are data, not errors: a refused or
/// silent port is as much an observation as an open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// The handshake completed (or SYN-ACK came back).
    Open,
    /// The host answered with a reset: reachable, nothing listening.
    Closed,
    /// No answer before the timeout: a firewall dropped it, or the host is gone.
    Filtered,
    /// The network said the host or net is unreachable (ICMP error).
    Unreachable,
    /// The probe could not be sent (local resource shortage and the like). A port
    /// with this outcome is *not* counted as covered.
    Error,
}

/// Counts of outcomes in one host scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// Ports found open.
    pub open: u32,
    /// Ports that answered with a reset.
    pub closed: u32,
    /// Ports that never answered.
    pub filtered: u32,
    /// Ports behind an ICMP unreachable.
    pub unreachable: u32,
    /// Ports that could not be probed (not covered).
    pub error: u32,
}

impl OutcomeCounts {
    /// Count one outcome.
    pub fn add(&mut self, outcome: ProbeOutcome) {
        match outcome {
            ProbeOutcome::Open => self.open += 1,
            ProbeOutcome::Closed => self.closed += 1,
            ProbeOutcome::Filtered => self.filtered += 1,
            ProbeOutcome::Unreachable => self.unreachable += 1,
            ProbeOutcome::Error => self.error += 1,
        }
    }

    /// Add another set of counts.
    pub fn merge(&mut self, other: &OutcomeCounts) {
        self.open += other.open;
        self.closed += other.closed;
        self.filtered += other.filtered;
        self.unreachable += other.unreachable;
        self.error += other.error;
    }

    /// True when the host answered anything at all (open or reset), i.e. it is alive.
    pub fn host_answered(&self) -> bool {
        self.open > 0 || self.closed > 0
    }
}

/// How a liveness check was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LivenessMethod {
    /// A full TCP connect to a port (unprivileged).
    TcpConnect,
    /// ICMP echo request.
    IcmpEcho,
    /// A raw TCP SYN.
    TcpSyn,
    /// A raw TCP ACK.
    TcpAck,
}

/// One liveness probe and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivenessProbe {
    /// Technique used.
    pub method: LivenessMethod,
    /// Port for TCP methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// What came back.
    pub outcome: ProbeOutcome,
    /// Round-trip time in milliseconds when something answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

/// Task 0: is a host alive. A host is alive if any method answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostLiveness {
    /// The host.
    pub ip: IpAddr,
    /// True if any probe got an answer (open or reset count as answers).
    pub alive: bool,
    /// Each probe that was made.
    pub probes: Vec<LivenessProbe>,
}

/// The summary of one scan of one host within one job. It says which ports were
/// *covered* (probed with a definite outcome), so that a port missing from `open` but
/// inside `covered` is known not to be open at that time, while a port outside
/// `covered` says nothing. This is what lets projections derive "closed" honestly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostScan {
    /// The host.
    pub ip: IpAddr,
    /// Protocol of every port in this summary.
    pub proto: Proto,
    /// When the first probe to this host was sent.
    pub started_at: Timestamp,
    /// Ports probed with a definite outcome (open, closed, filtered, unreachable).
    pub covered: PortSet,
    /// Ports found open (a subset of `covered`), ascending.
    pub open: Vec<u16>,
    /// Outcome counts over all ports that were tried.
    pub counts: OutcomeCounts,
    /// The host answered "open" on random canary ports nobody asked about: it
    /// answers on every port (SYN proxy, tarpit, some CDNs). Then `open` is empty,
    /// `covered` is empty (the scan proves nothing about single ports) and the
    /// would-be open ports are counted in `unverified`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wildcard: bool,
    /// Ports that looked open but are not trusted (wildcard host, forged SYN-ACKs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unverified: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How strong the evidence is that a port is really open.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// A SYN-ACK came back (raw SYN scan).
    SynAck,
    /// A full TCP handshake completed.
    Handshake,
    /// The port sent or accepted application data.
    Data,
    /// A protocol was identified.
    Service,
}

/// Details about one open port: how it was seen and, once service detection has run,
/// what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortDetail {
    /// The host.
    pub ip: IpAddr,
    /// The port.
    pub port: u16,
    /// Its protocol.
    pub proto: Proto,
    /// Strongest evidence that the port is open.
    pub evidence: Evidence,
    /// Handshake round-trip time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Service name (nmap's names where one exists: `mysql`, `redis`, `ssh`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Product, e.g. `MariaDB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Product version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The first bytes the service sent, lossily decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// Risk class the detecting node gave the port: `risk_port`, `high_risk_port`,
    /// `high_risk_service` or `high_risk_admin_panel`. Its presence marks a
    /// detection (which replaces the previous one's panels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<RiskClass>,
    /// Admin panels found on the port (rule ids, e.g. `tomcat-manager`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub panels: Vec<String>,
    /// Title of the web page at `/`, for web ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Subject of the TLS certificate, when the service speaks TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_subject: Option<String>,
}

/// What was observed. The JSON form carries it inline, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// A liveness result.
    HostLiveness(HostLiveness),
    /// A per-host port scan summary.
    HostScan(HostScan),
    /// Details about one open port.
    PortDetail(PortDetail),
}

impl Observation {
    /// The host this observation is about.
    pub fn ip(&self) -> IpAddr {
        match self {
            Observation::HostLiveness(o) => o.ip,
            Observation::HostScan(o) => o.ip,
            Observation::PortDetail(o) => o.ip,
        }
    }

    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Observation::HostLiveness(_) => "host_liveness",
            Observation::HostScan(_) => "host_scan",
            Observation::PortDetail(_) => "port_detail",
        }
    }
}

/// One immutable observation event: an envelope (who, when, which job) around an
/// [`Observation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u16,
    /// Unique id; the event log drops a second event with the same id.
    pub id: EventId,
    /// When the observation was complete.
    pub ts: Timestamp,
    /// Name of the probe node that made it.
    pub node: String,
    /// The job it belongs to.
    pub job: JobId,
    /// The task the job ran.
    pub task: Task,
    /// What was seen.
    #[serde(flatten)]
    pub observation: Observation,
}

/// Where an event came from; shared by all events of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Probe node name.
    pub node: String,
    /// Job id.
    pub job: JobId,
    /// Task.
    pub task: Task,
}

impl Event {
    /// A new event with a fresh id and the current schema version.
    pub fn new(origin: &Origin, ts: Timestamp, observation: Observation) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: EventId::new(),
            ts,
            node: origin.node.clone(),
            job: origin.job,
            task: origin.task,
            observation,
        }
    }

    /// The partition key: the host's address, so that one host's events stay in order.
    pub fn key(&self) -> String {
        self.observation.ip().to_string()
    }

    /// JSON encoding (one line, no trailing newline).
    pub fn to_json(&self) -> String {
        // Serialising plain data structs into a String cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"encode_error\":\"{e}\"}}"))
    }

    /// Decode one JSON event, refusing unknown schema versions.
    pub fn from_json(text: &str) -> Result<Event, DecodeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            v: Option<u16>,
        }
        // One parse on the hot path; only a record that fails it, or carries another
        // version, is parsed again to say why.
        let full = serde_json::from_str::<Event>(text);
        if let Ok(event) = &full {
            if event.v == SCHEMA_VERSION {
                return full.map_err(|e| DecodeError::Json(e.to_string()));
            }
        }
        let version: VersionOnly =
            serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
        match version.v {
            None => Err(DecodeError::MissingVersion),
            Some(SCHEMA_VERSION) => full.map_err(|e| DecodeError::Json(e.to_string())),
            Some(v) => Err(DecodeError::UnknownVersion(v)),
        }
    }
}

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid JSON, or a field has the wrong type or value.
    #[error("invalid event JSON: {0}")]
    Json(String),
    /// The `v` field is absent.
    #[error("event has no schema version field `v`")]
    MissingVersion,
    /// The `v` field names a version this build does not know.
    #[error("event schema version `v` = {0} is not supported (this build knows {SCHEMA_VERSION})")]
    UnknownVersion(u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            node: "n1".into(),
            job: JobId::new(),
            task: Task::FullPorts,
        }
    }

    #[test]
    fn host_scan_round_trips_through_json_with_flat_layout() {
        let ev = Event::new(
            &origin(),
            Utc::now(),
            Observation::HostScan(HostScan {
                ip: "127.0.0.2".parse().expect("ip"),
                proto: Proto::Tcp,
                started_at: Utc::now(),
                covered: PortSet::parse("1-1024,3306").expect("ports"),
                open: vec![22, 3306],
                counts: OutcomeCounts {
                    open: 2,
                    closed: 1023,
                    ..Default::default()
                },
                wildcard: false,
                unverified: 0,
            }),
        );
        let json = ev.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["kind"], "host_scan");
        assert_eq!(value["ip"], "127.0.0.2");
        assert_eq!(value["covered"], "1-1024,3306");
        assert_eq!(value["task"], "full_ports");
        assert_eq!(value["v"], 1);
        assert_eq!(Event::from_json(&json).expect("decode"), ev);
        assert_eq!(ev.key(), "127.0.0.2");
    }

    #[test]
    fn unknown_and_missing_versions_are_refused_by_name() {
        let err = Event::from_json(r#"{"v":99,"kind":"host_scan"}"#).expect_err("v99");
        assert_eq!(err, DecodeError::UnknownVersion(99));
        assert!(err.to_string().contains("`v` = 99"));
        assert_eq!(
            Event::from_json(r#"{"kind":"host_scan"}"#).expect_err("no v"),
            DecodeError::MissingVersion
        );
        assert!(matches!(
            Event::from_json("not json").expect_err("garbage"),
            DecodeError::Json(_)
        ));
    }

    #[test]
    fn task_names_match_serde_names() {
        for task in Task::SCHEDULED {
            let json = serde_json::to_string(&task).expect("json");
            assert_eq!(json, format!("\"{}\"", task.as_str()));
        }
    }
}
