//! The scale-out dispatcher: splits each job by the zones of its targets' assets and
//! publishes one order per zone to the jobs topic (keyed by zone, so each zone's
//! probe nodes share them as a consumer group), and keeps each job's row in
//! ClickHouse up to date from the probe nodes' control messages.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_events::control::{Control, ControlKind, JobOrder};
use portwatch_events::{JobId, SCHEMA_VERSION};
use portwatch_ingest::TopicProducer;
use portwatch_probes::TargetSet;
use portwatch_stores::{ClickHouseStore, JobRow};

use super::jobs::JobSpec;
use super::scheduler::{Dispatch, Dispatched};

/// Issues jobs to probe nodes and remembers what it issued.
pub struct Issuer {
    store: ClickHouseStore,
    producer: TopicProducer,
    jobs: Mutex<HashMap<JobId, JobRow>>,
    assets: portwatch_projections::Assets,
}

impl Issuer {
    /// An issuer publishing to `producer`'s topic (jobs), splitting jobs by the zones
    /// of `assets`, recording them in `store`.
    pub fn new(
        store: ClickHouseStore,
        producer: TopicProducer,
        assets: portwatch_projections::Assets,
    ) -> Self {
        Self {
            store,
            producer,
            jobs: Mutex::new(HashMap::new()),
            assets,
        }
    }
}

impl Dispatch for Issuer {
    fn dispatch(&self, spec: JobSpec) -> BoxFuture<'_, Dispatched> {
        async move {
            self.issue(spec).await;
            Dispatched::Handed
        }
        .boxed()
    }

    fn last_issued(&self, task: portwatch_events::Task) -> BoxFuture<'_, Option<chrono::DateTime<Utc>>> {
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

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("topic", &self.producer.topic())
            .finish_non_exhaustive()
    }
}

/// A job in flight that no probe node reported on for this long is kept only in
/// ClickHouse.
const FORGET_AFTER_SECS: u32 = 3600;

fn now_secs() -> u32 {
    u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX)
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

impl Issuer {
    /// The ClickHouse store target sets are read from.
    pub fn store(&self) -> &ClickHouseStore {
        &self.store
    }

    /// Split `spec` by the zone of each target's asset and send one job per zone.
    /// A job that cannot be sent is logged and counted; the task's next run issues
    /// it again.
    pub async fn issue(&self, spec: JobSpec) {
        let assets = &self.assets;
        let mut by_zone: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for ip in spec.targets {
            match assets.lookup(ip) {
                Some(asset) => by_zone.entry(asset.zone.clone()).or_default().push(ip),
                None => tracing::warn!(%ip, "target outside every asset; not issued"),
            }
        }
        let single = by_zone.len() == 1;
        for (zone, ips) in by_zone {
            let order = JobOrder {
                v: SCHEMA_VERSION,
                id: if single { spec.job } else { JobId::new() },
                zone: zone.clone(),
                task: spec.task,
                targets: TargetSet::from_ips(ips.iter().copied())
                    .nets()
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                ports: spec.ports.clone(),
                issued_at: Utc::now(),
            };
            let body = serde_json::to_string(&order).unwrap_or_default();
            // Known before it is sent: a probe node may take it, run it and report
            // it done before the send returns.
            let row = JobRow {
                id: order.id.to_string(),
                zone: zone.clone(),
                task: spec.task.as_str().to_string(),
                state: "queued".into(),
                node: String::new(),
                targets: ips.len() as u64,
                issued_at: now_secs(),
                updated_at: now_secs(),
                detail: "{}".into(),
                ver: now_ms(),
            };
            {
                let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
                // Jobs nobody reported on for an hour (a zone without probe nodes)
                // are forgotten here; a late report reads the job from ClickHouse.
                let stale = row.updated_at.saturating_sub(FORGET_AFTER_SECS);
                jobs.retain(|_, j| j.updated_at >= stale);
                jobs.insert(order.id, row.clone());
            }
            // On record before it is sent: a leader that dies right after sending
            // leaves its successor the issue time, so the slot is not issued twice.
            // (A probe node's later report has a later version and wins.)
            if let Err(err) = self.store.write_jobs(std::slice::from_ref(&row)).await {
                tracing::warn!(error = %err, "cannot record job in clickhouse");
            }
            if let Err(err) = self.producer.send(&zone, &body).await {
                self.jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&order.id);
                metrics::counter!("portwatch_jobs_issue_failed_total").increment(1);
                tracing::error!(zone = %zone, task = %spec.task, error = %err, "cannot issue job; the next run of the task retries");
                let failed = JobRow {
                    state: "failed".into(),
                    detail: serde_json::json!({ "error": format!("not issued: {err}") }).to_string(),
                    updated_at: now_secs(),
                    ver: now_ms().max(row.ver + 1),
                    ..row
                };
                if let Err(err) = self.store.write_jobs(&[failed]).await {
                    tracing::warn!(error = %err, "cannot record job in clickhouse");
                }
                continue;
            }
            metrics::counter!("portwatch_jobs_issued_total", "task" => spec.task.as_str()).increment(1);
            tracing::info!(job = %order.id, zone = %zone, task = %spec.task, targets = ips.len(), ports = spec.ports.len(), "job issued");
        }
    }

    /// Apply a control message to the job it names; the updated row, if any. A job
    /// this process did not issue (an earlier control plane did, before a restart)
    /// is read from ClickHouse first, so that its task, zone, targets and issue time
    /// are kept; a finished job is forgotten here once updated (its row is in
    /// ClickHouse), so the map holds only the jobs in flight (and not those no node
    /// reported on for [`FORGET_AFTER_SECS`]).
    pub(crate) async fn job_update(&self, msg: &Control) -> Option<JobRow> {
        let (job, state, detail) = match &msg.kind {
            ControlKind::JobLeased { job, .. } => (*job, "leased", serde_json::json!({})),
            ControlKind::JobFinished { job, hosts, open } => {
                (*job, "done", serde_json::json!({"hosts": hosts, "open": open}))
            }
            ControlKind::JobFailed { job, error } => (*job, "failed", serde_json::json!({"error": error})),
            ControlKind::NodeHeartbeat { .. } => return None,
        };
        let known = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&job);
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
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
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
        row.detail = detail.to_string();
        row.ver = row
            .ver
            .max(u64::try_from(msg.at.timestamp_millis()).unwrap_or(0))
            .max(now_ms());
        if state == "leased" {
            jobs.insert(job, row.clone());
        }
        Some(row)
    }
}
