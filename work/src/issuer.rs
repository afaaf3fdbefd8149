//! The scale-out dispatcher: the leader's chunk board ([`Work`]) handed to the
//! probe nodes. Every node of a zone that is alive (heard from within three
//! heartbeats) and idle gets the zone's most urgent chunk, as an order addressed to
//! it on the jobs topic; its heartbeats renew the lease; a node that goes silent
//! loses the chunk to the next idle node of its zone once the lease runs out. Each
//! attempt and each pass has its row in ClickHouse's `jobs`, kept up to date from
//! the nodes' control messages.
//!
//! Why leases held by the leader, not Kafka partitions keyed by chunk (or share
//! groups): with a consumer group a partition belongs to one node, so a node
//! that is busy holds up every chunk behind it in its partitions, a high-risk chunk
//! queues behind a whole sweep issued before it, and a dead node's partitions move
//! only after a rebalance; share groups (KIP-932) are not in librdkafka. A node
//! here holds one chunk at a time, and the leader, which knows each node's state,
//! picks the chunk when the node is free: priorities hold at every chunk and the
//! zone's nodes share a pass evenly.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::board::{Lease, Outcome, Pass};
use crate::{PassLog, Work};
use chrono::Utc;
use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_events::control::{ChunkRef, Control, ControlKind, JobOrder};
use portwatch_events::{JobId, Task, SCHEMA_VERSION};
use portwatch_ingest::TopicProducer;
use portwatch_stores::{ClickHouseStore, JobRow};
use tokio::sync::watch;

/// How often the dispatcher looks for idle nodes when nothing wakes it.
const TICK: Duration = Duration::from_millis(250);

/// A job in flight that no probe node reported on for this long is kept only in
/// ClickHouse.
const FORGET_AFTER_SECS: u32 = 3600;

fn now_secs() -> u32 {
    u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX)
}

/// Row versions: milliseconds, strictly increasing within this process (two
/// changes of a row in one millisecond keep their order).
fn next_ver() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let ver = now.max(last + 1);
        match LAST.compare_exchange(last, ver, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return ver,
            Err(seen) => last = seen,
        }
    }
}

/// Passes as rows of ClickHouse's `jobs` (written in the background, in order).
#[derive(Debug)]
pub struct ClickHousePasses {
    store: ClickHouseStore,
    rows: tokio::sync::mpsc::UnboundedSender<JobRow>,
}

impl ClickHousePasses {
    /// Passes written to `store`; the writer ends when this is dropped.
    pub fn new(store: ClickHouseStore) -> Self {
        let (rows, mut rx) = tokio::sync::mpsc::unbounded_channel::<JobRow>();
        let writer = store.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                if let Err(err) = writer.write_jobs(&batch).await {
                    tracing::warn!(error = %err, "cannot record passes in clickhouse");
                }
            }
        });
        Self { store, rows }
    }
}

/// The row of a pass.
fn pass_row(pass: &Pass, overruns: u64, error: Option<&str>) -> JobRow {
    let mut detail = serde_json::json!({
        "chunks": pass.chunks,
        "chunks_ended": pass.done + pass.failed,
        "hosts": pass.hosts,
        "open": pass.open,
        "ports": pass.ports,
    });
    if overruns > 0 {
        detail["overruns"] = overruns.into();
    }
    if let Some(error) = error {
        detail["error"] = error.into();
    }
    let secs = |t: chrono::DateTime<Utc>| u32::try_from(t.timestamp()).unwrap_or(0);
    JobRow {
        id: pass.pass.to_string(),
        zone: pass.zone.clone(),
        task: pass.task.as_str().to_string(),
        state: pass.state().as_str().into(),
        node: String::new(),
        targets: pass.addresses,
        issued_at: secs(pass.started_at),
        updated_at: pass.finished_at.map_or_else(now_secs, secs),
        detail: detail.to_string(),
        ver: next_ver(),
    }
}

impl PassLog for ClickHousePasses {
    fn record(&self, pass: &Pass, overruns: u64, error: Option<&str>) {
        let _ = self.rows.send(pass_row(pass, overruns, error));
    }

    fn last_issued(&self, task: Task) -> BoxFuture<'_, Option<chrono::DateTime<Utc>>> {
        async move {
            match self.store.last_issued(task.as_str()).await {
                Ok(at) => at.and_then(|secs| chrono::DateTime::from_timestamp(i64::from(secs), 0)),
                Err(err) => {
                    tracing::warn!(task = %task, error = %err, "cannot read when the task last ran; running it now");
                    None
                }
            }
        }
        .boxed()
    }
}

/// A probe node as the leader last heard of it.
#[derive(Debug, Clone)]
struct Seen {
    zone: String,
    at: Instant,
    /// The attempt its last word said it runs.
    running: Option<JobId>,
}

/// Hands the board's chunks to the probe nodes and follows what they report.
pub struct Issuer {
    store: ClickHouseStore,
    producer: TopicProducer,
    work: Arc<Work>,
    /// A node is gone after this long without a word.
    stale_after: Duration,
    nodes: Mutex<HashMap<String, Seen>>,
    /// Attempts in flight, by id.
    jobs: Mutex<HashMap<JobId, JobRow>>,
    /// Attempts that ended lately: a heartbeat sent just before the end may
    /// arrive after it, and must not make the node look busy.
    ended: Mutex<std::collections::HashSet<JobId>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("topic", &self.producer.topic())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer sending `work`'s chunks on `producer`'s topic (jobs), recording
    /// attempts in `store`; a node is gone after `stale_after` without a word.
    pub fn new(
        store: ClickHouseStore,
        producer: TopicProducer,
        work: Arc<Work>,
        stale_after: Duration,
    ) -> Self {
        Self {
            store,
            producer,
            work,
            stale_after,
            nodes: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            ended: Mutex::default(),
        }
    }

    /// The ClickHouse store target sets are read from.
    pub fn store(&self) -> &ClickHouseStore {
        &self.store
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, JobRow>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The nodes alive and idle now, by zone: no lease on the board, nothing
    /// running by their last word.
    fn idle(&self) -> BTreeMap<String, Vec<String>> {
        let mut idle: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let nodes: Vec<(String, Seen)> = self.nodes().iter().map(|(n, s)| (n.clone(), s.clone())).collect();
        for (node, seen) in nodes {
            if seen.at.elapsed() < self.stale_after
                && seen.running.is_none()
                && self.work.held_by(&node).is_empty()
            {
                idle.entry(seen.zone).or_default().push(node);
            }
        }
        idle
    }

    /// Passes an earlier leader left running: their board went with it, so they
    /// end here, failed, saying why (what their nodes still report is recorded on
    /// the attempts).
    pub async fn close_abandoned(&self) {
        let rows = match self.store.running_passes().await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the passes an earlier leader left running");
                return;
            }
        };
        if rows.is_empty() {
            return;
        }
        tracing::warn!(
            passes = rows.len(),
            "passes issued by an earlier leader are recorded as abandoned"
        );
        let closed: Vec<JobRow> = rows
            .into_iter()
            .map(|row| JobRow {
                state: "failed".into(),
                detail: merged(
                    &row.detail,
                    serde_json::json!({ "error": "abandoned: the leader that issued it stopped before it finished" }),
                ),
                updated_at: now_secs(),
                ver: next_ver(),
                ..row
            })
            .collect();
        if let Err(err) = self.store.write_jobs(&closed).await {
            tracing::warn!(error = %err, "cannot record abandoned passes");
        }
    }

    /// Hand out chunks until `stop`: every tick (or when chunks are waiting), each
    /// idle node gets its zone's most urgent chunk; lapsed leases are taken back.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            for lapsed in self.work.expire() {
                self.attempt_lapsed(lapsed.attempt, &lapsed.node).await;
            }
            for (zone, nodes) in self.idle() {
                for node in nodes {
                    let Some(lease) = self.work.take(&zone, &node) else {
                        break;
                    };
                    self.send(lease).await;
                }
            }
            tokio::select! {
                _ = self.work.wait(TICK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Send `lease` to its node. An order that cannot be sent fails its chunk
    /// (the pass records it, and task health shows it); the next pass tries again.
    async fn send(&self, lease: Lease) {
        let issued_at = Utc::now();
        let order = JobOrder {
            v: SCHEMA_VERSION,
            id: lease.attempt,
            zone: lease.zone.clone(),
            task: lease.task,
            targets: lease.chunk.targets.iter().map(ToString::to_string).collect(),
            ports: lease.chunk.ports.clone(),
            issued_at,
            node: Some(lease.node.clone()),
            chunk: Some(ChunkRef {
                pass: lease.pass,
                index: lease.index,
                chunks: lease.chunks,
                try_no: lease.try_no,
            }),
            lease_until: chrono::Duration::from_std(self.work.lease_for())
                .ok()
                .map(|d| issued_at + d),
        };
        let row = JobRow {
            id: lease.attempt.to_string(),
            zone: lease.zone.clone(),
            task: lease.task.as_str().to_string(),
            state: "queued".into(),
            node: lease.node.clone(),
            targets: lease.chunk.addresses,
            issued_at: now_secs(),
            updated_at: now_secs(),
            detail: serde_json::json!({
                "pass": lease.pass.to_string(),
                "chunk": lease.index,
                "chunks": lease.chunks,
                "try": lease.try_no,
            })
            .to_string(),
            ver: next_ver(),
        };
        {
            let mut jobs = self.jobs();
            let stale = row.updated_at.saturating_sub(FORGET_AFTER_SECS);
            jobs.retain(|_, j| j.updated_at >= stale);
            jobs.insert(lease.attempt, row.clone());
        }
        if let Err(err) = self.store.write_jobs(std::slice::from_ref(&row)).await {
            tracing::warn!(error = %err, "cannot record job in clickhouse");
        }
        let body = serde_json::to_string(&order).unwrap_or_default();
        if let Err(err) = self.producer.send(&lease.node, &body).await {
            metrics::counter!("portwatch_jobs_issue_failed_total").increment(1);
            tracing::error!(zone = %lease.zone, node = %lease.node, task = %lease.task, error = %err, "cannot issue chunk; its pass records the failure");
            let error = format!("not issued: {err}");
            self.work.finish(lease.attempt, &Outcome::Failed(error.clone()));
            self.jobs().remove(&lease.attempt);
            let failed = JobRow {
                state: "failed".into(),
                detail: merged(&row.detail, serde_json::json!({ "error": error })),
                updated_at: now_secs(),
                ver: next_ver(),
                ..row
            };
            if let Err(err) = self.store.write_jobs(&[failed]).await {
                tracing::warn!(error = %err, "cannot record job in clickhouse");
            }
            return;
        }
        metrics::counter!("portwatch_jobs_issued_total", "task" => lease.task.as_str()).increment(1);
        tracing::debug!(job = %lease.attempt, node = %lease.node, zone = %lease.zone, task = %lease.task, chunk = lease.index, chunks = lease.chunks, try_no = lease.try_no, "chunk issued");
    }

    /// A lease ran out: its attempt's row says so (what the node still reports
    /// later is recorded over it).
    async fn attempt_lapsed(&self, attempt: JobId, node: &str) {
        let row = self.jobs().remove(&attempt);
        let Some(row) = row else { return };
        let lapsed = JobRow {
            state: "lapsed".into(),
            detail: merged(
                &row.detail,
                serde_json::json!({ "error": format!("no word from {node} within the lease ({}s): its chunk was leased again", self.work.lease_for().as_secs()) }),
            ),
            updated_at: now_secs(),
            ver: next_ver(),
            ..row
        };
        if let Err(err) = self.store.write_jobs(&[lapsed]).await {
            tracing::warn!(error = %err, "cannot record job in clickhouse");
        }
    }

    /// Follow a control message: a node's word renews its lease and marks it
    /// alive; an attempt's end finishes its chunk. The attempt's updated row, if
    /// the message is about one. A job this process did not issue (an earlier
    /// leader did) is read from ClickHouse first, so its task, zone, targets and
    /// issue time are kept.
    pub(crate) async fn job_update(&self, msg: &Control) -> Option<JobRow> {
        let (job, state, detail) = match &msg.kind {
            ControlKind::NodeHeartbeat { running_job, .. } => {
                let running = running_job.filter(|j| !self.ended().contains(j));
                self.nodes().insert(
                    msg.node.clone(),
                    Seen {
                        zone: msg.zone.clone(),
                        at: Instant::now(),
                        running,
                    },
                );
                if let Some(job) = running_job {
                    self.work.renew(*job);
                }
                return None;
            }
            ControlKind::JobLeased { job, .. } => {
                self.work.renew(*job);
                self.seen(msg, Some(*job));
                (*job, "leased", serde_json::json!({}))
            }
            ControlKind::JobFinished { job, hosts, open } => {
                self.work.finish(
                    *job,
                    &Outcome::Done {
                        hosts: *hosts,
                        open: *open,
                    },
                );
                self.seen(msg, None);
                // Done after all, also when its lease had run out: no error.
                (
                    *job,
                    "done",
                    serde_json::json!({"hosts": hosts, "open": open, "error": null}),
                )
            }
            ControlKind::JobFailed { job, error } => {
                self.work.finish(*job, &Outcome::Failed(error.clone()));
                self.seen(msg, None);
                (*job, "failed", serde_json::json!({"error": error}))
            }
        };
        let known = self.jobs().contains_key(&job);
        let stored = if known {
            None
        } else {
            match self.store.job(&job.to_string()).await {
                Ok(row) => row,
                Err(err) => {
                    tracing::warn!(job = %job, error = %err, "cannot read the job's row; updating what the message says");
                    None
                }
            }
        };
        let mut jobs = self.jobs();
        let mut row = jobs.remove(&job).or(stored).unwrap_or_else(|| JobRow {
            id: job.to_string(),
            zone: msg.zone.clone(),
            task: String::new(),
            state: String::new(),
            node: String::new(),
            targets: 0,
            issued_at: 0,
            updated_at: 0,
            detail: "{}".into(),
            ver: 0,
        });
        row.state = state.to_string();
        row.node.clone_from(&msg.node);
        row.updated_at = u32::try_from(msg.at.timestamp()).unwrap_or(0);
        row.detail = merged(&row.detail, detail);
        row.ver = row
            .ver
            .max(u64::try_from(msg.at.timestamp_millis()).unwrap_or(0))
            .max(next_ver());
        if state == "leased" {
            jobs.insert(job, row.clone());
        }
        Some(row)
    }

    fn ended(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<JobId>> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node spoke: alive, running `running` (or nothing) now.
    fn seen(&self, msg: &Control, running: Option<JobId>) {
        if running.is_none() {
            if let ControlKind::JobFinished { job, .. } | ControlKind::JobFailed { job, .. } = &msg.kind {
                let mut ended = self.ended();
                if ended.len() >= 10_000 {
                    ended.clear();
                }
                ended.insert(*job);
            }
        }
        let mut nodes = self.nodes();
        let seen = nodes.entry(msg.node.clone()).or_insert_with(|| Seen {
            zone: msg.zone.clone(),
            at: Instant::now(),
            running: None,
        });
        seen.at = Instant::now();
        seen.running = running;
    }
}

/// `detail` (a JSON object) with the keys of `more` set.
fn merged(detail: &str, more: serde_json::Value) -> String {
    let mut base: serde_json::Value = serde_json::from_str(detail).unwrap_or_else(|_| serde_json::json!({}));
    if let (Some(base), serde_json::Value::Object(more)) = (base.as_object_mut(), more) {
        for (k, v) in more {
            base.insert(k, v);
        }
    }
    base.to_string()
}
