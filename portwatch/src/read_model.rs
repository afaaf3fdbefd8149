//! The two deployments' read models (`portwatch_stores::ReadModel`): the adapters
//! between the readers (the API, the scheduler, the block controller, the notifier)
//! and each deployment's store and job board.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use futures::FutureExt;
use portwatch_ingest::EmbeddedLog;
use portwatch_projections::{Alert, Episode, HostRow, PortRow};
use portwatch_stores::{
    AlertQuery, ClickHouseStore, EmbeddedStore, EpisodeQuery, EventCursor, Health, HostQuery, JobRow,
    JobView, NodeView, Page, PageRequest, PortQuery, ProbeNodeRow, ReadError, ReadFuture, ReadModel,
    StoredEvent, TaskRuns,
};

use portwatch_work::jobs::{JobBoard, JobRecord, JobState};

/// Embedded: the SQLite state store, the event log (for the lag) and this
/// process's job board; the process is its own single probe node.
pub struct EmbeddedRead {
    /// Read-only view of the state store.
    pub store: Arc<EmbeddedStore>,
    /// The event log.
    pub log: Arc<EmbeddedLog>,
    /// Recent jobs.
    pub board: Arc<JobBoard>,
    /// This node's name.
    pub node: String,
    /// Zone of this node's jobs.
    pub zone: String,
}

impl std::fmt::Debug for EmbeddedRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedRead")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Run a blocking SQLite read off the async threads.
fn blocking<'a, T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    store: &Arc<EmbeddedStore>,
    read: impl FnOnce(&EmbeddedStore) -> Result<T, E> + Send + 'static,
) -> ReadFuture<'a, T> {
    let store = store.clone();
    async move {
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(ReadError::from_display)?
            .map_err(ReadError::from_display)
    }
    .boxed()
}

/// A job as the state store keeps it, or none (with a warning) if it does not decode.
fn stored_job(text: &str) -> Option<JobRecord> {
    serde_json::from_str::<JobRecord>(text)
        .map_err(|err| tracing::warn!(error = %err, "unreadable job row skipped"))
        .ok()
}

/// A stored job as the board has it now, if the board still holds it (the store is
/// written behind the board). Jobs a stopped process left running were recorded
/// failed when this one started (`EmbeddedStore::interrupt_running_jobs`).
fn as_live(r: JobRecord, live: &[JobRecord]) -> JobRecord {
    live.iter().find(|l| l.job == r.job).cloned().unwrap_or(r)
}

impl EmbeddedRead {
    fn job_view(&self, r: JobRecord) -> JobView {
        JobView {
            id: r.job.to_string(),
            task: r.task.as_str().to_string(),
            state: r.state.as_str().to_string(),
            zone: self.zone.clone(),
            node: Some(self.node.clone()),
            targets: r.targets,
            hosts_done: Some(r.hosts_done),
            open_found: Some(r.open_found),
            error: r.error,
            started_at: Some(r.started_at),
            updated_at: Some(r.finished_at.unwrap_or(r.started_at)),
            pass: r.chunk.map(|c| c.pass.to_string()),
            chunk: r.chunk.map(|c| c.index),
            chunks: r.chunk.map(|c| c.chunks).or(r.progress.map(|p| p.chunks)),
            chunks_ended: r.progress.map(|p| p.ended),
            try_no: r.chunk.map(|c| c.try_no),
            overruns: r.progress.map(|p| p.overruns),
        }
    }
}

impl ReadModel for EmbeddedRead {
    fn ports<'a>(&'a self, query: &'a PortQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<PortRow>> {
        let (query, page) = (query.clone(), page.clone());
        blocking(&self.store, move |s| s.ports(&query, &page))
    }

    fn hosts<'a>(&'a self, query: &'a HostQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<HostRow>> {
        let (query, page) = (query.clone(), page.clone());
        blocking(&self.store, move |s| s.hosts(&query, &page))
    }

    fn episodes<'a>(
        &'a self,
        query: &'a EpisodeQuery,
        page: &'a PageRequest,
    ) -> ReadFuture<'a, Page<Episode>> {
        let (query, page) = (query.clone(), page.clone());
        blocking(&self.store, move |s| s.episodes(&query, &page))
    }

    fn alerts<'a>(&'a self, query: &'a AlertQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<Alert>> {
        let (query, page) = (query.clone(), page.clone());
        blocking(&self.store, move |s| s.alerts(&query, &page))
    }

    fn observations<'a>(
        &'a self,
        ip: std::net::IpAddr,
        after: Option<&'a EventCursor>,
        max: usize,
    ) -> ReadFuture<'a, Vec<StoredEvent>> {
        let log = self.log.clone();
        let before = after.map(|c| u64::try_from(c.at).unwrap_or(0));
        async move {
            let records = tokio::task::spawn_blocking(move || log.of_key(&ip.to_string(), before, max))
                .await
                .map_err(ReadError::from_display)?
                .map_err(ReadError::from_display)?;
            Ok(records
                .into_iter()
                .map(|r| StoredEvent {
                    at: EventCursor {
                        at: i64::try_from(r.offset).unwrap_or(i64::MAX),
                        id: String::new(),
                    },
                    event: r.event.map_err(|e| e.to_string()),
                })
                .collect())
        }
        .boxed()
    }

    fn jobs(&self, limit: usize) -> ReadFuture<'_, Vec<JobView>> {
        // This run's jobs from the board (current to the moment), earlier runs' from
        // the store.
        let live = self.board.list();
        let store = self.store.clone();
        async move {
            let stored = tokio::task::spawn_blocking(move || store.recent_jobs(limit))
                .await
                .map_err(ReadError::from_display)?
                .map_err(ReadError::from_display)?;
            let mut records = live;
            for text in stored {
                if let Some(r) = stored_job(&text) {
                    if !records.iter().any(|l| l.job == r.job) {
                        records.push(r);
                    }
                }
            }
            records.sort_by_key(|r| std::cmp::Reverse(r.started_at));
            Ok(records
                .into_iter()
                .take(limit)
                .map(|r| self.job_view(r))
                .collect())
        }
        .boxed()
    }

    fn task_runs(&self, since: portwatch_events::Timestamp) -> ReadFuture<'_, Vec<TaskRuns>> {
        let live = self.board.list();
        let store = self.store.clone();
        async move {
            let names: Vec<&'static str> = portwatch_events::Task::SCHEDULED
                .iter()
                .map(|t| t.as_str())
                .collect();
            let stored = tokio::task::spawn_blocking(move || store.task_runs(&names, since))
                .await
                .map_err(ReadError::from_display)?
                .map_err(ReadError::from_display)?;
            Ok(portwatch_events::Task::SCHEDULED
                .iter()
                .zip(stored)
                .filter(|(_, s)| s.last.is_some())
                .map(|(&task, s)| {
                    let view = |text: Option<String>| {
                        text.as_deref()
                            .and_then(stored_job)
                            .map(|r| self.job_view(as_live(r, &live)))
                    };
                    TaskRuns {
                        task,
                        zone: self.zone.clone(),
                        runs: s.runs,
                        failed: s.failed,
                        overruns: s.overruns,
                        last: view(s.last),
                        last_done: view(s.last_done),
                        last_failure: view(s.last_failed),
                    }
                })
                .collect())
        }
        .boxed()
    }

    fn nodes(&self) -> ReadFuture<'_, Vec<NodeView>> {
        let running = self
            .board
            .list()
            .into_iter()
            .find(|r| r.state == JobState::Running && r.progress.is_none())
            .map(|r| r.job.to_string());
        let node = NodeView {
            node: self.node.clone(),
            zone: self.zone.clone(),
            health: "ok",
            last_heartbeat_age_secs: 0,
            running_job: running,
            spooled: 0,
            spool_overflow: 0,
        };
        async move { Ok(vec![node]) }.boxed()
    }

    fn health(&self) -> ReadFuture<'_, Health> {
        let log = self.log.clone();
        blocking(&self.store, move |s| {
            crate::projector::lag(&*log, s).map(|lag| Health {
                status: "ok",
                projection_lag: Some(lag),
            })
        })
    }
}

/// Scale-out: ClickHouse holds the projected rows, the jobs the control plane
/// issued and the probe nodes' heartbeats.
#[derive(Debug, Clone)]
pub struct ClickHouseRead {
    /// The store.
    pub store: ClickHouseStore,
    /// A node is `stale` after this many seconds without a heartbeat.
    pub stale_after_secs: u64,
}

fn at(secs: u32) -> Option<portwatch_events::Timestamp> {
    (secs > 0)
        .then(|| Utc.timestamp_opt(i64::from(secs), 0).single())
        .flatten()
}

fn job_view(r: JobRow) -> JobView {
    let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
    JobView {
        id: r.id,
        task: r.task,
        state: r.state,
        zone: r.zone,
        node: (!r.node.is_empty()).then_some(r.node),
        targets: r.targets,
        hosts_done: detail["hosts"].as_u64(),
        open_found: detail["open"].as_u64(),
        error: detail["error"].as_str().map(str::to_string),
        started_at: at(r.issued_at),
        updated_at: at(r.updated_at),
        pass: detail["pass"].as_str().map(str::to_string),
        chunk: detail["chunk"].as_u64().and_then(|n| u32::try_from(n).ok()),
        chunks: detail["chunks"].as_u64().and_then(|n| u32::try_from(n).ok()),
        chunks_ended: detail["chunks_ended"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok()),
        try_no: detail["try"].as_u64().and_then(|n| u32::try_from(n).ok()),
        overruns: detail["overruns"].as_u64(),
    }
}

fn node_view(n: ProbeNodeRow, stale_after_secs: u64, now: u32) -> NodeView {
    let age = u64::from(now.saturating_sub(n.last_heartbeat));
    NodeView {
        node: n.node,
        zone: n.zone,
        health: if age <= stale_after_secs { "ok" } else { "stale" },
        last_heartbeat_age_secs: age,
        // A stale node runs nothing as far as anyone knows: its chunk is leased again.
        running_job: (age <= stale_after_secs && !n.running_job.is_empty()).then_some(n.running_job),
        spooled: n.spooled,
        spool_overflow: n.spool_overflow,
    }
}

impl ReadModel for ClickHouseRead {
    fn ports<'a>(&'a self, query: &'a PortQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<PortRow>> {
        async move {
            self.store
                .ports(query, page)
                .await
                .map_err(ReadError::from_display)
        }
        .boxed()
    }

    fn hosts<'a>(&'a self, query: &'a HostQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<HostRow>> {
        async move {
            self.store
                .hosts(query, page)
                .await
                .map_err(ReadError::from_display)
        }
        .boxed()
    }

    fn episodes<'a>(
        &'a self,
        query: &'a EpisodeQuery,
        page: &'a PageRequest,
    ) -> ReadFuture<'a, Page<Episode>> {
        async move {
            self.store
                .episodes(query, page)
                .await
                .map_err(ReadError::from_display)
        }
        .boxed()
    }

    fn alerts<'a>(&'a self, query: &'a AlertQuery, page: &'a PageRequest) -> ReadFuture<'a, Page<Alert>> {
        async move {
            self.store
                .alerts(query, page)
                .await
                .map_err(ReadError::from_display)
        }
        .boxed()
    }

    fn observations<'a>(
        &'a self,
        ip: std::net::IpAddr,
        after: Option<&'a EventCursor>,
        max: usize,
    ) -> ReadFuture<'a, Vec<StoredEvent>> {
        async move {
            let rows = self
                .store
                .observations(&ip.to_string(), after.map(|c| (c.at, c.id.as_str())), max as u64)
                .await
                .map_err(ReadError::from_display)?;
            Ok(rows
                .into_iter()
                .map(|(at, id, body)| StoredEvent {
                    event: portwatch_events::Event::from_json(&body).map_err(|e| e.to_string()),
                    at: EventCursor { at, id },
                })
                .collect())
        }
        .boxed()
    }

    fn jobs(&self, limit: usize) -> ReadFuture<'_, Vec<JobView>> {
        async move {
            let rows = self
                .store
                .jobs(limit as u64)
                .await
                .map_err(ReadError::from_display)?;
            Ok(rows.into_iter().map(job_view).collect())
        }
        .boxed()
    }

    fn task_runs(&self, since: portwatch_events::Timestamp) -> ReadFuture<'_, Vec<TaskRuns>> {
        async move {
            let since = u32::try_from(since.timestamp().max(0)).unwrap_or(u32::MAX);
            let rows = self
                .store
                .task_runs(since)
                .await
                .map_err(ReadError::from_display)?;
            let by_key = |rows: Vec<JobRow>| -> std::collections::HashMap<(String, String), JobRow> {
                rows.into_iter()
                    .map(|j| ((j.task.clone(), j.zone.clone()), j))
                    .collect()
            };
            let (mut done, mut failures) = (by_key(rows.last_done), by_key(rows.last_failed));
            let counts: std::collections::HashMap<(String, String), (u64, u64, u64)> = rows
                .counts
                .into_iter()
                .map(|c| ((c.task, c.zone), (c.runs, c.failed, c.overruns)))
                .collect();
            Ok(rows
                .last
                .into_iter()
                .filter_map(|j| {
                    let task = portwatch_events::Task::SCHEDULED
                        .into_iter()
                        .find(|t| t.as_str() == j.task)?;
                    let key = (j.task.clone(), j.zone.clone());
                    let (runs, failed, overruns) = counts.get(&key).copied().unwrap_or_default();
                    Some(TaskRuns {
                        task,
                        zone: j.zone.clone(),
                        runs,
                        failed,
                        overruns,
                        last_done: done.remove(&key).map(job_view),
                        last_failure: failures.remove(&key).map(job_view),
                        last: Some(job_view(j)),
                    })
                })
                .collect())
        }
        .boxed()
    }

    fn nodes(&self) -> ReadFuture<'_, Vec<NodeView>> {
        async move {
            let now = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
            let rows = self.store.nodes().await.map_err(ReadError::from_display)?;
            Ok(rows
                .into_iter()
                .map(|n| node_view(n, self.stale_after_secs, now))
                .collect())
        }
        .boxed()
    }

    fn health(&self) -> ReadFuture<'_, Health> {
        async move {
            self.store.ping().await.map_err(ReadError::from_display)?;
            Ok(Health {
                status: "ok",
                projection_lag: None,
            })
        }
        .boxed()
    }
}
