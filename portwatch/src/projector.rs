//! The projector: reads the event log from its committed offset, folds events with
//! the pure projections, and commits the changed rows together with the new offset.
//!
//! Because rows and offset are one transaction, a crash at any point leaves the store
//! at a batch boundary: on restart the projector re-reads exactly the events whose
//! effects were not committed. Nothing is lost, nothing is folded twice.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use portwatch_ingest::{EmbeddedLog, EventLog};
use portwatch_projections::{ChangeSet, FoldConfig, PortState, State};
use portwatch_stores::EmbeddedStore;
use tokio::sync::{watch, Notify};

use crate::config::Config;

/// Name under which the state projection stores its offsets.
pub const PROJECTION: &str = "state";
/// Events folded per transaction.
pub const BATCH: usize = 2000;

/// A fold over the log into a store.
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: EmbeddedStore,
    state: State,
    cfg: FoldConfig,
    /// Set when a commit failed after folding: the in-memory state is then ahead of
    /// the store and must be reloaded from it before the next step.
    stale: bool,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Records consumed (including undecodable ones, which are skipped).
    pub consumed: u64,
    /// Records that did not decode.
    pub skipped: u64,
    /// Events still to fold after this step.
    pub lag: u64,
}

impl Projector {
    /// Load the committed state from `store`.
    pub fn open(log: Arc<dyn EventLog>, store: EmbeddedStore, cfg: FoldConfig) -> anyhow::Result<Self> {
        if let Some(stored) = store.fold_config()? {
            if stored != cfg.close_after_misses {
                tracing::warn!(
                    stored,
                    configured = cfg.close_after_misses,
                    "state was built with another projection.close_after_misses; new events use the configured value (run `portwatch rebuild` for a consistent history)"
                );
            }
        }
        let state = store.load_state(cfg.clone())?;
        let projector = Self {
            log,
            store,
            state,
            cfg,
            stale: false,
        };
        projector.publish_gauges();
        tracing::info!(
            lag = projector.lag()?,
            "projection resuming from its committed offset"
        );
        Ok(projector)
    }

    /// Fold the next batch of every partition and commit it. Returns what it did.
    pub fn step(&mut self) -> anyhow::Result<Step> {
        if self.stale {
            self.state = self.store.load_state(self.cfg.clone())?;
            self.stale = false;
        }
        let mut step = Step::default();
        for partition in 0..self.log.partitions() {
            let from = self.store.next_offset(PROJECTION, partition)?;
            let records = self.log.read(partition, from, BATCH)?;
            let Some(last) = records.last().map(|r| r.offset) else {
                continue;
            };
            let mut changes = ChangeSet::default();
            for record in &records {
                match &record.event {
                    Ok(event) => changes.extend(self.state.apply(event)),
                    Err(err) => {
                        step.skipped += 1;
                        metrics::counter!("portwatch_projection_skipped_events_total").increment(1);
                        tracing::error!(partition, offset = record.offset, error = %err, "skipping undecodable event");
                    }
                }
            }
            if let Err(err) = self
                .store
                .commit(PROJECTION, partition, last + 1, &self.cfg, &changes)
            {
                self.stale = true;
                return Err(err).context("committing projected state");
            }
            step.consumed += records.len() as u64;
            metrics::counter!("portwatch_events_projected_total").increment(records.len() as u64);
        }
        step.lag = self.lag()?;
        self.publish_gauges();
        metrics::gauge!("portwatch_projection_lag_events").set(step.lag as f64);
        Ok(step)
    }

    /// Events appended but not yet folded, over all partitions.
    pub fn lag(&self) -> anyhow::Result<u64> {
        lag(&*self.log, &self.store)
    }

    /// Fold until the log is exhausted.
    pub fn catch_up(&mut self) -> anyhow::Result<u64> {
        let mut total = 0;
        loop {
            let step = self.step()?;
            total += step.consumed;
            if step.consumed == 0 || step.lag == 0 {
                return Ok(total);
            }
        }
    }

    fn publish_gauges(&self) {
        let open = self.state.ports().filter(|p| p.state == PortState::Open).count();
        metrics::gauge!("portwatch_ports_open").set(open as f64);
        metrics::gauge!("portwatch_hosts_known").set(self.state.hosts().count() as f64);
    }
}

/// Events in `log` that the state projection in `store` has not folded yet.
pub fn lag(log: &dyn EventLog, store: &EmbeddedStore) -> anyhow::Result<u64> {
    let mut lag = 0;
    for partition in 0..log.partitions() {
        let end = log.end_offset(partition)?;
        let next = store.next_offset(PROJECTION, partition)?;
        lag += end.saturating_sub(next);
    }
    Ok(lag)
}

/// Run the projector until `shutdown` flips, then fold what is left and return.
pub async fn run(projector: Projector, notify: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let projector = Arc::new(Mutex::new(projector));
    let mut failures = 0u32;
    loop {
        // Read before the step: a step that started after the drain signal (sent once
        // nothing appends any more) and found no lag has folded everything.
        let stopping = *shutdown.borrow();
        let p = projector.clone();
        let result =
            tokio::task::spawn_blocking(move || p.lock().unwrap_or_else(|e| e.into_inner()).step()).await;
        match result {
            Ok(Ok(step)) => {
                failures = 0;
                if step.lag > 0 {
                    continue;
                }
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(Err(err)) => {
                failures += 1;
                tracing::error!(error = %format!("{err:#}"), failures, "projection step failed; retrying");
                if stopping && failures > 5 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25)))).await;
            }
            Err(join) => {
                failures += 1;
                tracing::error!(error = %join, "projection task panicked; retrying");
                if stopping && failures > 5 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// `portwatch rebuild`: fold the whole log into a fresh store under `to`.
pub fn rebuild(cfg: &Config, to: &Path) -> anyhow::Result<()> {
    let target = to.join("state.db");
    if target.exists() {
        return Err(crate::InputError(format!(
            "--to {}: it already holds a state.db; choose an empty directory",
            to.display()
        ))
        .into());
    }
    let log_path = cfg.events_path();
    if !log_path.exists() {
        return Err(crate::InputError(format!("no event log at {}", log_path.display())).into());
    }
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&log_path)?);
    let store = EmbeddedStore::open(&target)?;
    let mut projector = Projector::open(log, store, cfg.projection.clone())?;
    let folded = projector.catch_up()?;
    tracing::info!(events = folded, to = %target.display(), "rebuilt state from the event log");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use portwatch_events::{
        Event, HostScan, JobId, Observation, Origin, OutcomeCounts, PortSet, Proto, Task,
    };

    fn scan(ip: &str, open: Vec<u16>) -> Event {
        let origin = Origin {
            node: "t".into(),
            job: JobId::new(),
            task: Task::FullPorts,
        };
        Event::new(
            &origin,
            Utc::now(),
            Observation::HostScan(HostScan {
                ip: ip.parse().expect("ip"),
                proto: Proto::Tcp,
                started_at: Utc::now(),
                covered: PortSet::parse("1-1000").expect("ports"),
                counts: OutcomeCounts {
                    open: open.len() as u32,
                    ..Default::default()
                },
                open,
                wildcard: false,
                unverified: 0,
            }),
        )
    }

    #[test]
    fn poison_records_are_skipped_and_the_rest_is_folded_and_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(EmbeddedLog::open(dir.path().join("events.db")).expect("log"));
        let good = vec![scan("127.0.0.2", vec![22]), scan("127.0.0.3", vec![80, 443])];
        log.append(&good[..1]).expect("append");
        assert!(log
            .append_raw("poison", "x", "{\"v\":1,\"kind\":\"host_scan\",\"ip\":\"nope\"}")
            .expect("raw"));
        log.append(&good[1..]).expect("append");
        let cfg = FoldConfig::default();
        let store = EmbeddedStore::open(dir.path().join("state.db")).expect("store");
        let mut projector = Projector::open(log.clone(), store, cfg.clone()).expect("projector");
        let step = projector.step().expect("step");
        assert_eq!(
            step,
            Step {
                consumed: 3,
                skipped: 1,
                lag: 0
            }
        );
        assert_eq!(projector.step().expect("idle").consumed, 0);
        let store = EmbeddedStore::open_read_only(dir.path().join("state.db")).expect("reader");
        assert_eq!(
            store.snapshot().expect("snapshot"),
            portwatch_projections::fold_all(cfg, &good)
        );
    }
}
