//! [`Work`]: the chunk board of a deployment with what surrounds it: every pass
//! and its end recorded where the job list reads them ([`PassLog`]), overruns
//! counted and logged, and whoever takes chunks woken when there are new ones.
//! The scheduler submits passes; the embedded worker pool, or the scale-out
//! dispatcher on behalf of the probe nodes, takes, renews and finishes chunks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::BoxFuture;
use portwatch_events::{JobId, Task};

use crate::board::{Board, Expired, Lease, Outcome, Overrun, Pass};
use crate::chunk::Chunk;

/// Where passes are recorded (the job list of the deployment).
pub trait PassLog: Send + Sync {
    /// The pass as it is now: running (with the cadence slots it overran), or
    /// ended (done, or failed with `error`).
    fn record(&self, pass: &Pass, overruns: u64, error: Option<&str>);

    /// When a pass of `task` was last issued, where passes outlive the process
    /// that issued them (scale-out); none where a start cuts them short.
    fn last_issued(&self, _task: Task) -> BoxFuture<'_, Option<chrono::DateTime<Utc>>> {
        Box::pin(futures::future::ready(None))
    }
}

/// The board and its bookkeeping.
pub struct Work {
    board: Mutex<Board>,
    log: Box<dyn PassLog>,
    /// Per unfinished pass: the slots it overran, and the last chunk error.
    notes: Mutex<HashMap<JobId, (u64, Option<String>)>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work").finish_non_exhaustive()
    }
}

impl Work {
    /// Work whose chunks are leased for `lease_for` unless renewed, recording
    /// passes in `log`.
    pub fn new(lease_for: Duration, log: Box<dyn PassLog>) -> Self {
        Self {
            board: Mutex::new(Board::new(lease_for)),
            log,
            notes: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, (u64, Option<String>)>> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a lease lasts unless renewed.
    pub fn lease_for(&self) -> Duration {
        self.board().lease_for()
    }

    /// The log passes are recorded in.
    pub fn log(&self) -> &dyn PassLog {
        &*self.log
    }

    /// A pass of `task` over `zone` in `chunks`. Refused while the task's last
    /// pass there runs: when this was a cadence slot (`slot`), that is an overrun,
    /// counted on the running pass, logged and on `/metrics`.
    pub fn submit(&self, task: Task, zone: &str, chunks: Vec<Chunk>, slot: bool) -> Result<Pass, Overrun> {
        let submitted = self.board().submit(task, zone, chunks, Utc::now());
        match &submitted {
            Ok(pass) => {
                metrics::counter!("portwatch_passes_issued_total", "task" => task.as_str(), "zone" => zone.to_string())
                    .increment(1);
                metrics::counter!("portwatch_chunks_issued_total", "task" => task.as_str(), "zone" => zone.to_string())
                    .increment(u64::from(pass.chunks));
                tracing::info!(pass = %pass.pass, task = %task, zone, chunks = pass.chunks, addresses = pass.addresses, "pass issued");
                self.log.record(pass, 0, None);
                self.wake.notify_waiters();
            }
            Err(overrun) if slot => {
                let overruns = {
                    let mut notes = self.notes();
                    let note = notes.entry(overrun.running.pass).or_default();
                    note.0 += 1;
                    note.0
                };
                metrics::counter!("portwatch_task_overruns_total", "task" => task.as_str(), "zone" => zone.to_string())
                    .increment(1);
                tracing::warn!(task = %task, zone, overruns, "{overrun}; this slot is skipped");
                self.log.record(&overrun.running, overruns, None);
            }
            Err(_) => {}
        }
        submitted
    }

    /// The most urgent chunk waiting in `zone`, leased to `node`.
    pub fn take(&self, zone: &str, node: &str) -> Option<Lease> {
        self.board().take(zone, node, Instant::now())
    }

    /// `node` still runs `attempt`: renew its lease. False when the lease ran out.
    pub fn renew(&self, attempt: JobId) -> bool {
        self.board().renew(attempt, Instant::now())
    }

    /// `attempt` ended; records its pass when that ended it.
    pub fn finish(&self, attempt: JobId, outcome: &Outcome) {
        if let Outcome::Failed(error) = outcome {
            if let Some(pass) = self.board().pass_of(attempt) {
                self.notes().entry(pass).or_default().1 = Some(error.clone());
            }
        }
        let ended = self.board().finish(attempt, outcome, Utc::now());
        if let Some(pass) = ended {
            self.ended(&pass);
        }
        // Its node is free: whoever hands out chunks looks again.
        self.wake.notify_waiters();
    }

    fn ended(&self, pass: &Pass) {
        let (overruns, error) = self.notes().remove(&pass.pass).unwrap_or_default();
        let error = (pass.failed > 0).then(|| {
            format!(
                "{} of {} chunks failed{}",
                pass.failed,
                pass.chunks,
                error.map(|e| format!(", the last: {e}")).unwrap_or_default()
            )
        });
        let took = pass
            .finished_at
            .map(|end| (end - pass.started_at).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or_default();
        metrics::gauge!("portwatch_pass_seconds", "task" => pass.task.as_str(), "zone" => pass.zone.clone())
            .set(took);
        tracing::info!(pass = %pass.pass, task = %pass.task, zone = %pass.zone, chunks = pass.chunks, failed = pass.failed, hosts = pass.hosts, open = pass.open, secs = took, "pass finished");
        self.log.record(pass, overruns, error.as_deref());
    }

    /// Leases past their deadline: their chunks wait to be taken again (the
    /// takers are woken), or fail after their last try.
    pub fn expire(&self) -> Vec<Expired> {
        let expired = self.board().expire(Instant::now(), Utc::now());
        for e in &expired {
            metrics::counter!("portwatch_chunk_leases_lapsed_total").increment(1);
            tracing::warn!(attempt = %e.attempt, node = %e.node, pass = %e.pass, chunk = e.index, requeued = e.requeued, "chunk lease ran out: its node went silent");
            if let Some(pass) = &e.ended {
                self.notes().entry(pass.pass).or_default().1 =
                    Some(format!("no node finished chunk {} in time", e.index));
                self.ended(pass);
            }
        }
        if expired.iter().any(|e| e.requeued) {
            self.wake.notify_waiters();
        }
        expired
    }

    /// Wait until chunks may be waiting (a pass submitted, a chunk back), at most
    /// `limit`.
    pub async fn wait(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.wake.notified()).await;
    }

    /// The attempts `node` holds.
    pub fn held_by(&self, node: &str) -> Vec<JobId> {
        self.board().held_by(node)
    }

    /// Chunks waiting in `zone`, per lane.
    pub fn waiting(&self, zone: &str) -> [usize; crate::board::LANES] {
        self.board().waiting(zone)
    }

    /// The unfinished passes.
    pub fn passes(&self) -> Vec<Pass> {
        self.board().passes()
    }
}
