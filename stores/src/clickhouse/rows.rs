//! The rows portwatch writes to ClickHouse, and the batch a projector writes at once.

use clickhouse::Row;
use portwatch_events::{Event, Observation, Timestamp};
use portwatch_projections::StateImage;
use serde::{Deserialize, Serialize};

/// A partition's checkpoint: everything before `next_offset` is folded and its rows
/// and host images are written.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The next offset to fold.
    pub next_offset: u64,
    /// The whole fold state, where an earlier version checkpointed it as one value;
    /// `None`: the state is the partition's host images.
    pub legacy_state: Option<StateImage>,
}

pub(super) fn secs(ts: Timestamp) -> u32 {
    u32::try_from(ts.timestamp()).unwrap_or(if ts.timestamp() < 0 { 0 } else { u32::MAX })
}

pub(super) fn json<T: Serialize>(value: &T) -> String {
    // Serialising these plain data types cannot fail (no maps with non-string keys).
    serde_json::to_string(value).unwrap_or_default()
}

/// One raw observation as stored in `observations`.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ObservationRow {
    id: String,
    ts: u32,
    ts_ms: i64,
    kind: String,
    node: String,
    job: String,
    task: String,
    ip: String,
    proto: String,
    open_ports: Vec<u16>,
    covered: String,
    alive: i8,
    wildcard: u8,
    pub(crate) body: String,
    kpartition: u32,
    koffset: u64,
}

impl ObservationRow {
    /// The row for `event`, read at `partition`/`offset`.
    pub fn new(event: &Event, partition: u32, offset: u64) -> Self {
        let mut row = Self::without_body(event, partition, offset);
        row.body = event.to_json();
        row
    }

    pub(crate) fn without_body(event: &Event, partition: u32, offset: u64) -> Self {
        let (proto, open_ports, covered, alive, wildcard) = match &event.observation {
            Observation::HostScan(s) => (
                s.proto.as_str().to_string(),
                s.open.clone(),
                s.covered.to_string(),
                i8::from(s.counts.host_answered()),
                u8::from(s.wildcard),
            ),
            Observation::HostLiveness(l) => (String::new(), Vec::new(), String::new(), i8::from(l.alive), 0),
            Observation::PortDetail(d) => (d.proto.as_str().to_string(), vec![d.port], String::new(), 1, 0),
        };
        Self {
            id: event.id.to_string(),
            ts: secs(event.ts),
            ts_ms: event.ts.timestamp_millis(),
            kind: event.observation.kind().to_string(),
            node: event.node.clone(),
            job: event.job.to_string(),
            task: event.task.as_str().to_string(),
            ip: event.observation.ip().to_string(),
            proto,
            open_ports,
            covered,
            alive,
            wildcard,
            body: String::new(),
            kpartition: partition,
            koffset: offset,
        }
    }
}

#[derive(Debug, Row, Serialize)]
pub(super) struct PortStateRow {
    pub(super) ip: String,
    pub(super) proto: String,
    pub(super) port: u16,
    pub(super) state: String,
    pub(super) first_seen: u32,
    pub(super) last_seen: u32,
    pub(super) last_change: u32,
    pub(super) misses: u32,
    pub(super) episode_id: String,
    pub(super) evidence: String,
    pub(super) service: String,
    pub(super) product: String,
    pub(super) svc_version: String,
    pub(super) risk: String,
    pub(super) ipkey: String,
    pub(super) skey: String,
    pub(super) row: String,
    pub(super) kpartition: u32,
    pub(super) ver: u64,
}

#[derive(Debug, Row, Serialize)]
pub(super) struct EpisodeRow {
    pub(super) id: String,
    pub(super) ip: String,
    pub(super) proto: String,
    pub(super) port: u16,
    pub(super) opened_at: u32,
    pub(super) last_seen: u32,
    pub(super) last_negative_before_open: Option<u32>,
    pub(super) mttd_bound_secs: Option<i64>,
    pub(super) closed_at: Option<u32>,
    pub(super) duration_secs: Option<i64>,
    pub(super) observations: u64,
    pub(super) ipkey: String,
    pub(super) skey: String,
    pub(super) row: String,
    pub(super) kpartition: u32,
    pub(super) ver: u64,
}

#[derive(Debug, Row, Serialize)]
pub(super) struct HostStateRow {
    pub(super) ip: String,
    pub(super) alive: i8,
    pub(super) last_alive: Option<u32>,
    pub(super) last_checked: Option<u32>,
    pub(super) scans: u64,
    pub(super) open_ports: u32,
    pub(super) wildcard: u8,
    pub(super) ipkey: String,
    pub(super) skey: String,
    pub(super) row: String,
    pub(super) kpartition: u32,
    pub(super) ver: u64,
}

#[derive(Debug, Row, Serialize)]
pub(super) struct AlertRow {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) severity: String,
    pub(super) ip: String,
    pub(super) proto: String,
    pub(super) port: u16,
    pub(super) episode_id: String,
    pub(super) at: u32,
    pub(super) risk: String,
    pub(super) ipkey: String,
    pub(super) skey: String,
    pub(super) body: String,
    pub(super) kpartition: u32,
    pub(super) ver: u64,
}

#[derive(Debug, Row, Serialize)]
pub(super) struct CheckpointRow {
    pub(super) consumer_group: String,
    pub(super) topic: String,
    pub(super) kpartition: u32,
    pub(super) next_offset: u64,
    pub(super) state: String,
    pub(super) written_at: u32,
    pub(super) ver: u64,
}

/// One host's image in a partition's fold state (`projector_state`).
#[derive(Debug, Row, Serialize)]
pub(super) struct HostImageRow {
    pub(super) consumer_group: String,
    pub(super) topic: String,
    pub(super) kpartition: u32,
    pub(super) host: String,
    pub(super) image: String,
    pub(super) ver: u64,
}

#[derive(Debug, Row, Deserialize)]
pub(super) struct HostImageRead {
    pub(super) image: String,
    pub(super) ver: u64,
}

#[derive(Debug, Row, Deserialize)]
pub(super) struct CheckpointRead {
    pub(super) next_offset: u64,
    pub(super) state: String,
}

#[derive(Debug, Row, Deserialize)]
pub(super) struct JsonRow {
    pub(super) row: String,
}

/// A job row, as the control plane writes it.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct JobRow {
    /// Job id.
    pub id: String,
    /// Zone it was issued to.
    pub zone: String,
    /// Task.
    pub task: String,
    /// queued, leased, done or failed.
    pub state: String,
    /// Probe node that took it.
    pub node: String,
    /// Target addresses.
    pub targets: u64,
    /// Issue time, seconds.
    pub issued_at: u32,
    /// Last update, seconds.
    pub updated_at: u32,
    /// Free-form JSON detail (counts, error).
    pub detail: String,
    /// Version (update time in milliseconds).
    pub ver: u64,
}

/// How many jobs of one task a zone was issued in a period, and how many failed.
#[derive(Debug, Clone, Row, Deserialize, PartialEq, Eq)]
pub struct TaskJobCounts {
    /// Task.
    pub task: String,
    /// Zone.
    pub zone: String,
    /// Passes issued.
    pub runs: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Cadence slots they overran.
    pub overruns: u64,
}

/// What the task health reads from `jobs`.
#[derive(Debug, Clone, Default)]
pub struct TaskRunRows {
    /// Per task and zone, in the period.
    pub counts: Vec<TaskJobCounts>,
    /// The newest job of each task and zone.
    pub last: Vec<JobRow>,
    /// The newest done job of each task and zone.
    pub last_done: Vec<JobRow>,
    /// The newest failed job of each task and zone.
    pub last_failed: Vec<JobRow>,
}

/// A probe node row, as the control plane writes it from heartbeats.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct ProbeNodeRow {
    /// Node name.
    pub node: String,
    /// Zone.
    pub zone: String,
    /// Last heartbeat, seconds.
    pub last_heartbeat: u32,
    /// Job being run, if any.
    pub running_job: String,
    /// Events waiting in the node's spool.
    pub spooled: u64,
    /// Events the spool had to refuse since the node started.
    pub spool_overflow: u64,
    /// The heartbeat as JSON.
    pub body: String,
    /// Version (heartbeat time in milliseconds).
    pub ver: u64,
}

/// One episode's MTTD / MTTR figures as stored in `episode_reports`.
#[derive(Debug, Row, Serialize)]
pub(super) struct EpisodeReportRow {
    pub(super) episode_id: String,
    pub(super) ip: String,
    pub(super) proto: String,
    pub(super) port: u16,
    pub(super) risk: String,
    pub(super) owner: String,
    pub(super) system: String,
    pub(super) opened_at: u32,
    pub(super) mttd_bound_secs: Option<i64>,
    pub(super) notified_at: Option<u32>,
    pub(super) time_to_notify_secs: Option<i64>,
    pub(super) remediated_at: Option<u32>,
    pub(super) remedy: String,
    pub(super) time_to_remediate_secs: Option<i64>,
    pub(super) ver: u64,
}

/// One notification's delivery to one channel as stored in `deliveries`.
#[derive(Debug, Row, Serialize)]
pub(super) struct DeliveryRow {
    pub(super) notification_id: String,
    pub(super) channel: String,
    pub(super) kind: String,
    pub(super) ip: String,
    pub(super) severity: String,
    pub(super) owner: String,
    pub(super) alerts: u32,
    pub(super) decided_at: u32,
    pub(super) attempts: u32,
    pub(super) outcome: String,
    pub(super) last_at: u32,
    pub(super) last_status: Option<u16>,
    pub(super) ver: u64,
}
