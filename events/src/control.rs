//! Messages of the scale-out control plane: jobs for probe nodes (topic `jobs`,
//! keyed by zone) and what probe nodes report back (topic `control`, keyed by node).
//! Versioned like events: readers refuse a `v` they do not know.

use serde::{Deserialize, Serialize};

use crate::{DecodeError, JobId, PortSet, Task, Timestamp, SCHEMA_VERSION};

/// A scan job for the probe nodes of one zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOrder {
    /// Schema version.
    pub v: u16,
    /// Job id; the job's events carry it.
    pub id: JobId,
    /// Zone whose probe nodes run it.
    pub zone: String,
    /// Task.
    pub task: Task,
    /// Targets as addresses or CIDR networks (aggregated).
    pub targets: Vec<String>,
    /// Ports per target.
    pub ports: PortSet,
    /// When the control plane issued it.
    pub issued_at: Timestamp,
    /// The probe node it is leased to; none in orders of earlier versions (any
    /// node of the zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The pass and chunk it is an attempt of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkRef>,
    /// The lease's first deadline: a node that reads the order later skips it
    /// (the chunk has been leased to another node by then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Timestamp>,
}

/// Where a chunk attempt belongs: its pass and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The pass.
    pub pass: JobId,
    /// The chunk's place in it (0-based).
    pub index: u32,
    /// Chunks of the pass.
    pub chunks: u32,
    /// Which try of the chunk (1 the first).
    pub try_no: u32,
}

/// What a probe node reports on the control topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlKind {
    /// The node is alive.
    NodeHeartbeat {
        /// Job it is running, if any.
        running_job: Option<JobId>,
        /// Events waiting in its spool.
        spooled: u64,
        /// Events its spool refused (full) since it started.
        spool_overflow: u64,
        /// Events delivered since it started.
        delivered: u64,
        /// Build version.
        version: String,
    },
    /// The node took a job.
    JobLeased {
        /// The job.
        job: JobId,
        /// Its task.
        task: Task,
    },
    /// The node finished a job; its events are spooled (and will reach the log).
    JobFinished {
        /// The job.
        job: JobId,
        /// Hosts reported.
        hosts: u64,
        /// Open ports found.
        open: u64,
    },
    /// The job failed.
    JobFailed {
        /// The job.
        job: JobId,
        /// Why.
        error: String,
    },
}

/// A control message: who, where, when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// Schema version.
    pub v: u16,
    /// Probe node name.
    pub node: String,
    /// Its zone.
    pub zone: String,
    /// When.
    pub at: Timestamp,
    /// What.
    #[serde(flatten)]
    pub kind: ControlKind,
}

/// Decode a versioned JSON record (control messages, the journal's decisions),
/// refusing a `v` this build does not know.
pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, DecodeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: Option<u16>,
    }
    let version: VersionOnly = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    match version.v {
        None => Err(DecodeError::MissingVersion),
        Some(SCHEMA_VERSION) => serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string())),
        Some(v) => Err(DecodeError::UnknownVersion(v)),
    }
}

impl JobOrder {
    /// Decode, refusing unknown versions.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        decode(text)
    }
}

impl Control {
    /// Decode, refusing unknown versions.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        decode(text)
    }
}
