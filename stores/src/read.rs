//! The read model: what every reader of projected state (the API, the scheduler,
//! the block controller, the notifier, the reporter) needs from a deployment, on the
//! store's side beside [`crate::StateSink`]. The embedded deployment answers from
//! SQLite and its own job board, the scale-out one from ClickHouse; both answer the
//! same queries ([`crate::query`]) with the same rows.

use crate::{AlertQuery, EpisodeQuery, HostQuery, Page, PageRequest, PortQuery};
use futures::future::BoxFuture;
use portwatch_events::Timestamp;
use portwatch_projections::{Alert, Episode, HostRow, PortRow};
use serde::Serialize;

/// A read that could not be answered: the store is down or failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

impl ReadError {
    /// A read error from any displayable failure.
    pub fn from_display(err: impl std::fmt::Display) -> Self {
        ReadError(err.to_string())
    }
}

/// What a read returns.
pub type ReadFuture<'a, T> = BoxFuture<'a, Result<T, ReadError>>;

/// One job, the same in both deployments.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// Job id (the `job` field of its events).
    pub id: String,
    /// Task it runs.
    pub task: String,
    /// queued, leased, running, done or failed.
    pub state: String,
    /// Zone it was issued to.
    pub zone: String,
    /// Probe node running it, once known.
    pub node: Option<String>,
    /// Target addresses.
    pub targets: u64,
    /// Hosts finished, once reported.
    pub hosts_done: Option<u64>,
    /// Open ports found, once reported.
    pub open_found: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was issued or started.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// Its last change.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<Timestamp>,
    /// A chunk attempt: the pass it belongs to (none for a pass).
    pub pass: Option<String>,
    /// A chunk attempt: the chunk's place in its pass (0-based).
    pub chunk: Option<u32>,
    /// Chunks of the pass.
    pub chunks: Option<u32>,
    /// A pass: chunks ended (done or failed).
    pub chunks_ended: Option<u32>,
    /// A chunk attempt: which try of the chunk (1 the first; a chunk whose
    /// holder went silent is tried again).
    pub try_no: Option<u32>,
    /// A pass: cadence slots skipped while it ran (its task overran).
    pub overruns: Option<u64>,
}

/// One probe node, the same in both deployments (the embedded process is its own
/// single probe node).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    /// Node name.
    pub node: String,
    /// Zone whose jobs it takes.
    pub zone: String,
    /// `ok`, or `stale` after three missed heartbeats.
    pub health: &'static str,
    /// Seconds since its last heartbeat.
    pub last_heartbeat_age_secs: u64,
    /// The job it runs, if any.
    pub running_job: Option<String>,
    /// Events waiting in its spool.
    pub spooled: u64,
    /// Events its spool refused since it started.
    pub spool_overflow: u64,
}

/// One task's jobs in one zone: how many were issued in a period and how many of
/// them failed, its newest job, its newest done one and its newest failure
/// (whenever they were).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TaskRuns {
    /// The task.
    pub task: portwatch_events::Task,
    /// The zone whose probes ran them (`default` in the embedded deployment).
    pub zone: String,
    /// Jobs issued in the period.
    pub runs: u64,
    /// Of those, failed (an embedded job cut short by a stop counts).
    pub failed: u64,
    /// Cadence slots skipped in the period because the task's pass was still
    /// running (overruns).
    pub overruns: u64,
    /// The newest job.
    pub last: Option<JobView>,
    /// The newest job that finished well.
    pub last_done: Option<JobView>,
    /// The newest failed job.
    pub last_failure: Option<JobView>,
}

/// Health of the deployment's state.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the store answers.
    pub status: &'static str,
    /// Events recorded but not folded yet, where the deployment can tell.
    pub projection_lag: Option<u64>,
}

/// A position in one host's history of observations, newest first: a number the
/// store orders by (the embedded log's offset, or the time in milliseconds in
/// ClickHouse) and a tie-breaker (the event id where the number may repeat). The
/// API gives it out as `NUMBER~TIEBREAKER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    /// What the store orders by, descending.
    pub at: i64,
    /// Breaks ties of `at`, descending; empty where `at` is unique.
    pub id: String,
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}~{}", self.at, self.id)
    }
}

impl std::str::FromStr for EventCursor {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (at, id) = text.split_once('~').ok_or(())?;
        let id_ok = id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        match at.parse() {
            Ok(at) if id_ok => Ok(Self {
                at,
                id: id.to_string(),
            }),
            _ => Err(()),
        }
    }
}

/// One recorded observation event of a host, where it sits in the host's history,
/// and the event (or why its record does not decode).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its position; the next page starts after it.
    pub at: EventCursor,
    /// The event as recorded.
    pub event: Result<portwatch_events::Event, String>,
}

/// The reads behind the API.
pub trait ReadModel: Send + Sync {
    /// Port rows, one page.
    fn ports<'a>(&'a self, query: &'a PortQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<PortRow>>;
    /// Hosts, one page.
    fn hosts<'a>(&'a self, query: &'a HostQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<HostRow>>;
    /// Episodes, one page.
    fn episodes<'a>(
        &'a self,
        query: &'a EpisodeQuery,
        page: &'a PageRequest,
    ) -> ReadFuture<'a, Page<Episode>>;
    /// Alerts, one page.
    fn alerts<'a>(&'a self, query: &'a AlertQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<Alert>>;
    /// One host's observation events as recorded, newest first: at most `max`, all
    /// after `after` in that order when given.
    fn observations<'a>(
        &'a self,
        ip: std::net::IpAddr,
        after: Option<&'a EventCursor>,
        max: usize,
    ) -> ReadFuture<'a, Vec<StoredEvent>>;
    /// The most recent jobs, newest first.
    fn jobs(&self, limit: usize) -> ReadFuture<'_, Vec<JobView>>;
    /// Each scheduled task's jobs per zone since `since`, with its newest job and
    /// newest failure; tasks that never ran are left out.
    fn task_runs(&self, since: Timestamp) -> ReadFuture<'_, Vec<TaskRuns>>;
    /// Probe nodes, by name.
    fn nodes(&self) -> ReadFuture<'_, Vec<NodeView>>;
    /// Health.
    fn health(&self) -> ReadFuture<'_, Health>;
}
