//! The embedded deployment's projector: the one fold loop
//! (`portwatch_projector`) reading the embedded log and committing the changed rows
//! together with the new offset into the embedded store, in one transaction, so a
//! crash at any point leaves the store at a batch boundary and a restart re-reads
//! exactly the events whose effects were not committed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portwatch_ingest::{EmbeddedLog, EmbeddedReader, EventLog};
use portwatch_projections::FoldConfig;
use portwatch_projector::{Projector, Settings};
use portwatch_stores::{EmbeddedSink, EmbeddedStore};
use tokio::sync::{watch, Notify};

use crate::config::Config;

/// Name under which the state projection stores its offsets.
pub const PROJECTION: &str = EmbeddedSink::PROJECTION;
/// Events folded per transaction.
pub const BATCH: usize = 2000;

/// The projector of `portwatch up`: folds `log` into `store`, woken by `notify`
/// after appends; on stop it folds what the log holds, then returns.
pub fn embedded(
    log: Arc<dyn EventLog>,
    store: Arc<EmbeddedStore>,
    cfg: FoldConfig,
    notify: Arc<Notify>,
) -> Projector<EmbeddedReader> {
    let settings = Settings {
        batch: BATCH,
        batch_wait: Duration::from_millis(500),
        checkpoint_interval: Duration::ZERO,
        fold: cfg.clone(),
        drain_on_stop: true,
        accept_gap: false,
    };
    let sink = Arc::new(EmbeddedSink::new(store, cfg.clone()));
    Projector::new(EmbeddedReader::new(log, notify), sink, settings)
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

/// Fold the whole of `log` into `store` and return (rebuilds, tests).
pub async fn catch_up(log: Arc<dyn EventLog>, store: Arc<EmbeddedStore>, cfg: FoldConfig) {
    let mut projector = embedded(log, store, cfg, Arc::new(Notify::new()));
    projector.set_batch_wait(Duration::from_millis(1));
    let (_stop_tx, stop) = watch::channel(true);
    if let Err(err) = projector.run(stop).await {
        tracing::error!(error = %err, "the fold stopped");
    }
}

/// `portwatch rebuild`: fold the whole log into a fresh store under `to`.
pub async fn rebuild(cfg: &Config, to: &Path) -> anyhow::Result<()> {
    let target = fresh(to, "state.db")?;
    let log_path = cfg.events_path();
    if !log_path.exists() {
        return Err(crate::InputError(format!("no event log at {}", log_path.display())).into());
    }
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&log_path)?);
    fold_into(log, &target, cfg).await?;
    tracing::info!(to = %target.display(), "rebuilt state from the event log");
    Ok(())
}

/// `portwatch rebuild --from-clickhouse`: the scale-out archive (ClickHouse's
/// `observations`, kept for `[clickhouse] retention_months` while the topic keeps
/// only `[kafka] observations_retention`) copied in log order into a fresh embedded
/// log under `to`, and every projection folded from it into `to/state.db`: the
/// state the projectors would reach folding the whole history again.
pub async fn rebuild_from_clickhouse(cfg: &Config, to: &Path) -> anyhow::Result<()> {
    /// Observations read per query.
    const PAGE: u64 = 20_000;
    let events_path = fresh(to, "events.db")?;
    let target = fresh(to, "state.db")?;
    let store = portwatch_stores::ClickHouseStore::new(cfg.scaleout.clickhouse.clone())?;
    store.check_schema().await?;
    let log = Arc::new(EmbeddedLog::open(&events_path)?);
    let (mut after, mut copied) = (None, 0u64);
    loop {
        let page = store.archived(after, PAGE).await?;
        let Some(&(partition, offset, _)) = page.last() else {
            break;
        };
        let events = page
            .iter()
            .map(|(partition, offset, body)| {
                portwatch_events::Event::from_json(body).map_err(|e| {
                    anyhow::anyhow!(
                        "clickhouse observations: the row of log partition {partition} offset {offset} does not decode: {e}"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        log.append(&events)?;
        copied += events.len() as u64;
        after = Some((partition, offset));
    }
    fold_into(log, &target, cfg).await?;
    tracing::info!(observations = copied, to = %to.display(), "rebuilt state from the ClickHouse archive");
    Ok(())
}

/// `name` under `to`, which must not exist yet.
fn fresh(to: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = to.join(name);
    if path.exists() {
        return Err(crate::InputError(format!(
            "--to {}: it already holds a {name}; choose an empty directory",
            to.display()
        ))
        .into());
    }
    Ok(path)
}

/// Fold the whole of `log` into a new store at `target`; fails when events are
/// left unfolded.
async fn fold_into(log: Arc<dyn EventLog>, target: &Path, cfg: &Config) -> anyhow::Result<()> {
    let store = Arc::new(EmbeddedStore::open(target)?);
    catch_up(log.clone(), store.clone(), cfg.projection.clone()).await;
    let left = lag(&*log, &store)?;
    if left > 0 {
        anyhow::bail!("rebuild stopped with {left} events not folded (see the log above)");
    }
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

    #[tokio::test]
    async fn poison_records_are_skipped_and_the_rest_is_folded_and_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(EmbeddedLog::open(dir.path().join("events.db")).expect("log"));
        let good = vec![scan("127.0.0.2", vec![22]), scan("127.0.0.3", vec![80, 443])];
        log.append(&good[..1]).expect("append");
        assert!(log
            .append_raw("poison", "x", "{\"v\":1,\"kind\":\"host_scan\",\"ip\":\"nope\"}")
            .expect("raw"));
        log.append(&good[1..]).expect("append");
        let cfg = FoldConfig::default();
        let store = Arc::new(EmbeddedStore::open(dir.path().join("state.db")).expect("store"));
        catch_up(log.clone(), store.clone(), cfg.clone()).await;
        assert_eq!(
            store.next_offset(PROJECTION, 0).expect("offset"),
            4,
            "past the poison too"
        );
        assert_eq!(lag(&*log, &store).expect("lag"), 0);
        // Folding again from the committed offset changes nothing.
        catch_up(log.clone(), store.clone(), cfg.clone()).await;
        assert_eq!(store.next_offset(PROJECTION, 0).expect("offset"), 4);
        let store = EmbeddedStore::open_read_only(dir.path().join("state.db")).expect("reader");
        assert_eq!(
            store.snapshot().expect("snapshot"),
            portwatch_projections::fold_all(cfg, &good)
        );
    }
}
