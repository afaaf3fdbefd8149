//! Projections: pure folds from observation events to the state operators look at.
//!
//! `probes → event log → **projections** → stores → alerts / API / dashboards`
//!
//! [`State::apply`] takes one [`Event`] and returns the rows it changed. It does no
//! I/O, reads no clock and holds no locks, so the same fold serves the embedded store,
//! the ClickHouse projector and the golden tests in `tests/fixtures/`, and replaying a
//! log always gives the same state. The stores persist the changed rows together with
//! the log offset that produced them.
//!
//! What is derived here:
//! - **port state** per (ip, proto, port): open, or closed after N consecutive
//!   covering scans missed it ([`FoldConfig::close_after_misses`]);
//! - **exposure episodes**: one per open period of a port, with the MTTD bound (the
//!   last covering scan that did *not* see it open before it was first seen open);
//! - **host liveness**: from liveness checks and from any answer during a port scan;
//! - **alerts** ([`alerts`]): one per episode and kind (opened, high-risk service,
//!   admin panel, closed), with stable ids, classified by the one risk [`policy`].

pub mod alerts;
pub mod approvals;
pub mod assets;
pub mod blocks;
pub mod bounds;
mod checkpoint;
pub mod lapses;
pub mod ledger;
pub mod notice;
pub mod notifications;
pub mod policy;
pub mod report;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use portwatch_events::{
    Event, EventId, Evidence, HostLiveness, HostScan, Observation, PortDetail, PortSet, Proto, RiskClass,
    Timestamp,
};
use serde::{Deserialize, Serialize};

pub use approvals::{Approval, ApprovalState};
pub use assets::{Asset, Assets};
pub use checkpoint::HostImage;
pub use ledger::{
    AuditEntry, BlockCheck, DeliveryState, Ledger, NotSecond, NotificationRecord, ScheduleChange,
    TokenRecord, UserRecord,
};
pub use notifications::{Notifier, NotifyPolicy, Tick};
pub use policy::Policy;
pub use portwatch_events::alert::{
    sort_alerts, Alert, AlertKind, AssetMatch, Notification, NotificationKind, Severity,
};
pub use portwatch_events::decision::{
    is_system_actor, Actor, Applied, ApprovalRequest, AttemptOutcome, BlockRequest, Bound, Decision,
    DecisionKind, DeliveryAttempt, Fingerprint, Role, SilenceReason, TokenIssued, SYSTEM_ACTORS,
};

/// Tuning of the folds. Part of the projection's identity: replaying with another
/// config gives another (equally valid) state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldConfig {
    /// A port open in state is declared closed only after this many consecutive
    /// covering scans missed it. One miss can be a dropped packet or a restarting
    /// service; declaring closure on it would split one exposure into many episodes
    /// and make MTTR look better than it is.
    pub close_after_misses: u32,
    /// How many distinct scan coverages to remember per host for MTTD bounds.
    pub coverage_memory: usize,
    /// The risk policy alerts are classified by.
    pub policy: Arc<Policy>,
}

impl Default for FoldConfig {
    fn default() -> Self {
        Self {
            close_after_misses: 2,
            coverage_memory: 16,
            policy: Arc::new(Policy::default()),
        }
    }
}

/// Key of a port row: sorted so that one host's ports are contiguous.
pub type PortKey = (IpAddr, Proto, u16);

/// Whether a port is currently considered open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    /// Seen open and not (yet) missed often enough to be declared closed.
    Open,
    /// Was open once; covering scans have missed it `close_after_misses` times.
    Closed,
}

impl PortState {
    /// Lower-case name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
        }
    }
}

/// Current state of one port that has been seen open at least once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PortRow {
    /// Host address.
    #[schema(value_type = String, example = "10.1.0.7")]
    pub ip: IpAddr,
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
    /// Open or closed.
    pub state: PortState,
    /// First time this port was ever seen open.
    #[schema(value_type = String, format = DateTime)]
    pub first_seen: Timestamp,
    /// Last time it was seen open.
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Timestamp,
    /// When `state` last changed.
    #[schema(value_type = String, format = DateTime)]
    pub last_change: Timestamp,
    /// Consecutive covering scans that did not find it open.
    pub misses: u32,
    /// Time of the first of those misses, if any.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub missing_since: Option<Timestamp>,
    /// The current (or, when closed, the last) exposure episode.
    pub episode_id: String,
    /// Strongest evidence seen for it being open.
    pub evidence: Evidence,
    /// Last handshake round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Service name once detected.
    pub service: Option<String>,
    /// Product once detected.
    pub product: Option<String>,
    /// Version once detected.
    pub version: Option<String>,
    /// Banner once seen.
    pub banner: Option<String>,
    /// Risk class the last detection's node gave it (a high-risk admin panel here
    /// is what makes the port one; see [`Policy::risk_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<RiskClass>,
    /// Admin panels from the last detection of a web port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub panels: Vec<String>,
    /// Web page title from the last detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// TLS certificate subject from the last detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_subject: Option<String>,
    /// When service detection last ran on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub detected_at: Option<Timestamp>,
    /// Its risk class under the fold's [`Policy`] (from the port number, the
    /// detected service and the panels found).
    #[serde(default = "risk_port")]
    pub risk: RiskClass,
}

fn risk_port() -> RiskClass {
    RiskClass::RiskPort
}

/// One period during which a port was open to the scanners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Episode {
    /// Stable id, derived from the event that opened it.
    pub id: String,
    /// Host address.
    #[schema(value_type = String, example = "10.1.0.7")]
    pub ip: IpAddr,
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
    /// First observation of the port open (time of detection).
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: Timestamp,
    /// Last observation of it open.
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Timestamp,
    /// Start of the last scan that covered the port and did not find it open,
    /// before `opened_at`. The port opened after this moment, so
    /// `opened_at - last_negative_before_open` bounds the time to detect.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_negative_before_open: Option<Timestamp>,
    /// That bound in whole seconds (None when no earlier covering scan is known).
    pub mttd_bound_secs: Option<i64>,
    /// Time of the first covering scan that missed it, once closure is declared.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<Timestamp>,
    /// Time of the scan whose miss declared the closure.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_declared_at: Option<Timestamp>,
    /// Exposure duration in seconds (`closed_at - opened_at`) once closed.
    pub duration_secs: Option<i64>,
    /// Number of scans that saw it open during this episode.
    pub observations: u64,
    /// The alert kinds this episode has raised, in order: each at most once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertKind>,
}

/// What portwatch believes about one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostRow {
    /// Host address.
    #[schema(value_type = String, example = "10.1.0.7")]
    pub ip: IpAddr,
    /// `Some(true)` once anything answered, `Some(false)` after a liveness check got
    /// no answer at all, `None` while unknown.
    pub alive: Option<bool>,
    /// Last time anything answered.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_alive: Option<Timestamp>,
    /// Last liveness check or port scan.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_checked: Option<Timestamp>,
    /// Port scans recorded for this host.
    pub scans: u64,
    /// Ports currently open.
    pub open_ports: u32,
    /// The last port scan found it answering on every port (see `HostScan::wildcard`).
    #[serde(default)]
    pub wildcard: bool,
    /// Recent distinct scan coverages, newest last, used to bound MTTD.
    pub coverage: Vec<CoverageMark>,
}

impl HostRow {
    /// A host nothing was recorded of yet.
    pub fn unseen(ip: IpAddr) -> Self {
        Self {
            ip,
            alive: None,
            last_alive: None,
            last_checked: None,
            scans: 0,
            open_ports: 0,
            wildcard: false,
            coverage: Vec::new(),
        }
    }
}

/// The last time a given set of ports was scanned on a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoverageMark {
    /// Protocol of the scan.
    pub proto: Proto,
    /// Ports it covered.
    #[schema(value_type = String, example = "22,80,8000-8100")]
    pub ports: PortSet,
    /// When that scan started.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// A row changed by one event; stores upsert these.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A port row, full new value.
    Port(PortRow),
    /// An episode, full new value.
    Episode(Episode),
    /// A host row, full new value.
    Host(HostRow),
    /// A new alert (each id is raised once).
    Alert(Alert),
}

/// Changes of many events, coalesced so each row is written once per batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChangeSet {
    /// Changed port rows by key.
    pub ports: BTreeMap<PortKey, PortRow>,
    /// Changed episodes by id.
    pub episodes: BTreeMap<String, Episode>,
    /// Changed host rows by address.
    pub hosts: BTreeMap<IpAddr, HostRow>,
    /// New alerts by id.
    pub alerts: BTreeMap<String, Alert>,
}

impl ChangeSet {
    /// Record changes; a later value of the same row replaces an earlier one.
    pub fn extend(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            match change {
                Change::Port(row) => {
                    self.ports.insert((row.ip, row.proto, row.port), row);
                }
                Change::Episode(ep) => {
                    self.episodes.insert(ep.id.clone(), ep);
                }
                Change::Host(host) => {
                    self.hosts.insert(host.ip, host);
                }
                Change::Alert(alert) => {
                    self.alerts.insert(alert.id.clone(), alert);
                }
            }
        }
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.episodes.is_empty() && self.hosts.is_empty() && self.alerts.is_empty()
    }
}

/// Everything the store holds, sorted: what a rebuild must reproduce exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// All port rows.
    pub ports: Vec<PortRow>,
    /// All episodes, open and closed.
    pub episodes: Vec<Episode>,
    /// All host rows.
    pub hosts: Vec<HostRow>,
    /// All alerts, by time then id.
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// How many recent event ids the fold remembers per host to drop redelivered
/// duplicates. Logs that cannot dedupe by id themselves (Kafka: a probe node that
/// resends the events whose acknowledgement it never got) redeliver at most the
/// events of one produce batch, one or two per host. Every id kept costs ~40 bytes
/// per host in each projector checkpoint.
pub const RECENT_IDS_PER_HOST: usize = 4;

/// The fold state. Only what later events can change lives here: port rows, open
/// episodes and host rows. Closed episodes are final and live only in the store.
#[derive(Debug, Clone, Default)]
pub struct State {
    cfg: FoldConfig,
    ports: BTreeMap<PortKey, PortRow>,
    open_episodes: BTreeMap<PortKey, Episode>,
    hosts: BTreeMap<IpAddr, HostRow>,
    recent: BTreeMap<IpAddr, VecDeque<EventId>>,
    /// Hosts changed since the last [`State::take_changed`] (see [`HostImage`]).
    changed: BTreeSet<IpAddr>,
}

/// Everything a [`State`] holds, as plain lists: what a projector checkpoints next to
/// its offset so that a restart resumes from exactly the state that offset implies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateImage {
    /// Port rows.
    pub ports: Vec<PortRow>,
    /// Open episodes.
    pub open_episodes: Vec<Episode>,
    /// Host rows.
    pub hosts: Vec<HostRow>,
    /// Recently folded event ids per host, oldest first.
    #[serde(default)]
    pub recent: Vec<(IpAddr, Vec<EventId>)>,
}

impl State {
    /// Empty state.
    pub fn new(cfg: FoldConfig) -> Self {
        Self {
            cfg,
            ..Default::default()
        }
    }

    /// State restored from stored rows (episodes: only the open ones are kept).
    pub fn from_rows(
        cfg: FoldConfig,
        ports: impl IntoIterator<Item = PortRow>,
        episodes: impl IntoIterator<Item = Episode>,
        hosts: impl IntoIterator<Item = HostRow>,
    ) -> Self {
        let mut state = Self::new(cfg);
        state.add_rows(ports, episodes, hosts);
        state
    }

    /// Add stored rows, replacing what the state has under their keys (episodes:
    /// only the open ones are kept).
    fn add_rows(
        &mut self,
        ports: impl IntoIterator<Item = PortRow>,
        episodes: impl IntoIterator<Item = Episode>,
        hosts: impl IntoIterator<Item = HostRow>,
    ) {
        for row in ports {
            self.ports.insert((row.ip, row.proto, row.port), row);
        }
        for ep in episodes {
            if ep.closed_at.is_none() {
                self.open_episodes.insert((ep.ip, ep.proto, ep.port), ep);
            }
        }
        for host in hosts {
            self.hosts.insert(host.ip, host);
        }
    }

    /// The whole state as plain lists (see [`StateImage`]).
    pub fn image(&self) -> StateImage {
        StateImage {
            ports: self.ports.values().cloned().collect(),
            open_episodes: self.open_episodes.values().cloned().collect(),
            hosts: self.hosts.values().cloned().collect(),
            recent: self
                .recent
                .iter()
                .map(|(ip, ids)| (*ip, ids.iter().copied().collect()))
                .collect(),
        }
    }

    /// State restored from an [`StateImage`].
    pub fn from_image(cfg: FoldConfig, image: StateImage) -> Self {
        let mut state = Self::from_rows(cfg, image.ports, image.open_episodes, image.hosts);
        state.recent = image
            .recent
            .into_iter()
            .map(|(ip, ids)| (ip, ids.into_iter().collect()))
            .collect();
        // Nothing of it is stored host by host yet.
        state.changed = state.known_hosts();
        state
    }

    /// The fold configuration.
    pub fn config(&self) -> &FoldConfig {
        &self.cfg
    }

    /// Port rows, sorted by key.
    pub fn ports(&self) -> impl Iterator<Item = &PortRow> {
        self.ports.values()
    }

    /// Host rows, sorted by address.
    pub fn hosts(&self) -> impl Iterator<Item = &HostRow> {
        self.hosts.values()
    }

    /// Open episodes, sorted by port key.
    pub fn open_episodes(&self) -> impl Iterator<Item = &Episode> {
        self.open_episodes.values()
    }

    /// Fold one event into the state; returns the rows it changed. An event whose id
    /// was among the host's last [`RECENT_IDS_PER_HOST`] is a redelivery and changes
    /// nothing.
    pub fn apply(&mut self, event: &Event) -> Vec<Change> {
        let recent = self.recent.entry(event.observation.ip()).or_default();
        if recent.contains(&event.id) {
            return Vec::new();
        }
        if recent.len() == RECENT_IDS_PER_HOST {
            recent.pop_front();
        }
        recent.push_back(event.id);
        self.changed.insert(event.observation.ip());
        let mut changes = match &event.observation {
            Observation::HostScan(scan) => self.apply_scan(event.id, event.ts, scan),
            Observation::HostLiveness(live) => self.apply_liveness(event.ts, live),
            Observation::PortDetail(detail) => self.apply_detail(event.ts, detail),
        };
        // Every changed port row carries its class under the policy.
        for change in &mut changes {
            if let Change::Port(row) = change {
                let risk = self.cfg.policy.risk_of(row);
                row.risk = risk;
                if let Some(kept) = self.ports.get_mut(&(row.ip, row.proto, row.port)) {
                    kept.risk = risk;
                }
            }
        }
        changes
    }

    fn host_mut(&mut self, ip: IpAddr) -> &mut HostRow {
        self.hosts.entry(ip).or_insert_with(|| HostRow::unseen(ip))
    }

    fn apply_liveness(&mut self, ts: Timestamp, live: &HostLiveness) -> Vec<Change> {
        let host = self.host_mut(live.ip);
        host.alive = Some(live.alive);
        if live.alive {
            host.last_alive = Some(max_ts(host.last_alive, ts));
        }
        host.last_checked = Some(max_ts(host.last_checked, ts));
        vec![Change::Host(host.clone())]
    }

    fn apply_detail(&mut self, ts: Timestamp, detail: &PortDetail) -> Vec<Change> {
        let Some(row) = self.ports.get_mut(&(detail.ip, detail.proto, detail.port)) else {
            // Details about a port that no scan summary has reported open carry no
            // state of their own: the summary is what opens an episode.
            return Vec::new();
        };
        row.evidence = row.evidence.max(detail.evidence);
        if detail.rtt_ms.is_some() {
            row.rtt_ms = detail.rtt_ms;
        }
        for (slot, value) in [
            (&mut row.service, &detail.service),
            (&mut row.product, &detail.product),
            (&mut row.version, &detail.version),
            (&mut row.banner, &detail.banner),
            (&mut row.title, &detail.title),
            (&mut row.tls_subject, &detail.tls_subject),
        ] {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
        // A detection (it carries a class) replaces the previous one's panels.
        if detail.class.is_some() {
            row.class = detail.class;
            row.panels.clone_from(&detail.panels);
            row.detected_at = Some(max_ts(row.detected_at, ts));
        }
        let mut changes = vec![Change::Port(row.clone())];
        // A high-risk class found on an open port: one alert per episode and class.
        let risk = self.cfg.policy.risk_of(row);
        let episode = self
            .open_episodes
            .get_mut(&(detail.ip, detail.proto, detail.port));
        if let (Some(kind), Some(ep), true) = (AlertKind::for_class(risk), episode, detail.class.is_some()) {
            if !ep.alerts.contains(&kind) {
                ep.alerts.push(kind);
                changes.push(Change::Episode(ep.clone()));
                changes.push(Change::Alert(alerts::raise(
                    kind,
                    risk,
                    ep,
                    alerts::detection_time(row),
                )));
            }
        }
        changes
    }

    fn apply_scan(&mut self, event_id: EventId, ts: Timestamp, scan: &HostScan) -> Vec<Change> {
        let cfg = self.cfg.clone();
        let mut changes = Vec::new();
        // The MTTD bound of a newly open port comes from earlier scans only, so read
        // the coverage memory before this scan is added to it.
        let coverage_before = self
            .hosts
            .get(&scan.ip)
            .map(|h| h.coverage.clone())
            .unwrap_or_default();

        // 1. Ports seen open.
        for &port in &scan.open {
            let key = (scan.ip, scan.proto, port);
            match self.ports.get_mut(&key) {
                Some(row) if row.state == PortState::Open => {
                    row.last_seen = max_ts(Some(row.last_seen), ts);
                    row.misses = 0;
                    row.missing_since = None;
                    if let Some(ep) = self.open_episodes.get_mut(&key) {
                        ep.last_seen = row.last_seen;
                        ep.observations += 1;
                        changes.push(Change::Episode(ep.clone()));
                    }
                    changes.push(Change::Port(row.clone()));
                }
                existing => {
                    let previous_last_seen = existing.as_ref().map(|r| r.last_seen);
                    let last_negative = coverage_before
                        .iter()
                        .filter(|m| m.proto == scan.proto && m.ports.contains(port))
                        .map(|m| m.at)
                        .filter(|&at| at < ts && previous_last_seen.is_none_or(|seen| at > seen))
                        .max();
                    let episode = Episode {
                        id: format!("{}-{}-{}", event_id, scan.proto, port),
                        ip: scan.ip,
                        port,
                        proto: scan.proto,
                        opened_at: ts,
                        last_seen: ts,
                        last_negative_before_open: last_negative,
                        mttd_bound_secs: last_negative.map(|n| (ts - n).num_seconds()),
                        closed_at: None,
                        closed_declared_at: None,
                        duration_secs: None,
                        observations: 1,
                        alerts: vec![AlertKind::ExposureOpened],
                    };
                    let row = match existing {
                        Some(row) => {
                            row.state = PortState::Open;
                            row.last_seen = ts;
                            row.last_change = ts;
                            row.misses = 0;
                            row.missing_since = None;
                            row.episode_id.clone_from(&episode.id);
                            row.clone()
                        }
                        None => {
                            let row = PortRow {
                                ip: scan.ip,
                                port,
                                proto: scan.proto,
                                state: PortState::Open,
                                first_seen: ts,
                                last_seen: ts,
                                last_change: ts,
                                misses: 0,
                                missing_since: None,
                                episode_id: episode.id.clone(),
                                evidence: Evidence::Handshake,
                                rtt_ms: None,
                                service: None,
                                product: None,
                                version: None,
                                banner: None,
                                class: None,
                                panels: Vec::new(),
                                title: None,
                                tls_subject: None,
                                detected_at: None,
                                risk: RiskClass::RiskPort,
                            };
                            self.ports.insert(key, row.clone());
                            row
                        }
                    };
                    let risk = self.cfg.policy.risk_of(&row);
                    changes.push(Change::Port(row));
                    changes.push(Change::Episode(episode.clone()));
                    changes.push(Change::Alert(alerts::raise(
                        AlertKind::ExposureOpened,
                        risk,
                        &episode,
                        episode.opened_at,
                    )));
                    self.open_episodes.insert(key, episode);
                }
            }
        }

        // 2. Open ports this scan covered but did not find: a miss. A scan that
        //    started before the port was last seen open is older news and says nothing
        //    (events from a spooling probe node can arrive late).
        let lo = (scan.ip, scan.proto, 0u16);
        let hi = (scan.ip, scan.proto, u16::MAX);
        let mut open_now = 0u32;
        for (key, row) in self.ports.range_mut(lo..=hi) {
            if row.state != PortState::Open {
                continue;
            }
            let port = key.2;
            let missed = scan.covered.contains(port)
                && scan.open.binary_search(&port).is_err()
                && scan.started_at > row.last_seen;
            if !missed {
                open_now += 1;
                continue;
            }
            row.misses += 1;
            let first_miss = *row.missing_since.get_or_insert(ts);
            if row.misses >= cfg.close_after_misses {
                row.state = PortState::Closed;
                row.last_change = ts;
                if let Some(mut ep) = self.open_episodes.remove(key) {
                    ep.closed_at = Some(first_miss);
                    ep.closed_declared_at = Some(ts);
                    ep.duration_secs = Some((first_miss - ep.opened_at).num_seconds());
                    ep.alerts.push(AlertKind::ExposureClosed);
                    let risk = cfg.policy.risk_of(row);
                    changes.push(Change::Alert(alerts::raise(
                        AlertKind::ExposureClosed,
                        risk,
                        &ep,
                        first_miss,
                    )));
                    changes.push(Change::Episode(ep));
                }
            } else {
                open_now += 1;
            }
            changes.push(Change::Port(row.clone()));
        }

        // 3. The host: it answered (alive), and remember this coverage.
        let memory = cfg.coverage_memory.max(1);
        let host = self.host_mut(scan.ip);
        host.scans += 1;
        host.last_checked = Some(max_ts(host.last_checked, ts));
        if scan.counts.host_answered() {
            host.alive = Some(true);
            host.last_alive = Some(max_ts(host.last_alive, ts));
        }
        host.open_ports = open_now;
        host.wildcard = scan.wildcard;
        if !scan.covered.is_empty() {
            match host
                .coverage
                .iter_mut()
                .find(|m| m.proto == scan.proto && m.ports == scan.covered)
            {
                Some(mark) => mark.at = mark.at.max(scan.started_at),
                None => host.coverage.push(CoverageMark {
                    proto: scan.proto,
                    ports: scan.covered.clone(),
                    at: scan.started_at,
                }),
            }
            host.coverage.sort_by_key(|m| m.at);
            let excess = host.coverage.len().saturating_sub(memory);
            host.coverage.drain(..excess);
        }
        changes.push(Change::Host(host.clone()));
        changes
    }
}

fn max_ts(current: Option<Timestamp>, candidate: Timestamp) -> Timestamp {
    match current {
        Some(c) if c > candidate => c,
        _ => candidate,
    }
}

/// Fold a whole sequence of events from empty state into a [`Snapshot`] (used by
/// golden tests and by `portwatch rebuild`-style comparisons).
pub fn fold_all<'a>(cfg: FoldConfig, events: impl IntoIterator<Item = &'a Event>) -> Snapshot {
    let mut state = State::new(cfg);
    let mut changes = ChangeSet::default();
    for event in events {
        changes.extend(state.apply(event));
    }
    Snapshot {
        ports: state.ports.into_values().collect(),
        episodes: {
            let mut episodes: Vec<Episode> = changes.episodes.into_values().collect();
            sort_episodes(&mut episodes);
            episodes
        },
        hosts: state.hosts.into_values().collect(),
        alerts: {
            let mut alerts: Vec<Alert> = changes.alerts.into_values().collect();
            sort_alerts(&mut alerts);
            alerts
        },
    }
}

/// The canonical episode order of a [`Snapshot`]: by port key, then opening time.
pub fn sort_episodes(episodes: &mut [Episode]) {
    episodes.sort_by(|a, b| {
        (a.ip, a.proto, a.port, a.opened_at, &a.id).cmp(&(b.ip, b.proto, b.port, b.opened_at, &b.id))
    });
}
