//! The scale-out roles: the same folds and probes as `portwatch up`, with Kafka as
//! the event log and ClickHouse as the store.
//!
//! ```text
//!  control ──jobs (by zone)──▶ probe --zone A ─┐
//!     ▲                      ▶ probe --zone B ─┼─observations (by ip)─▶ project ×N ──▶ ClickHouse
//!     └────────── control (heartbeats, leases, results) ◀──────────────┘                 │
//!     └──────────────────────────── reads state ◀────────────────────────────────────────┘
//! ```
//!
//! - [`probe`]: `portwatch probe --zone Z` takes its zone's jobs, scans, and spools
//!   observations to Kafka.
//! - [`project`]: `portwatch project` instances share the observation partitions as
//!   a consumer group and write rows and checkpoints to ClickHouse.
//! - [`control`]: `portwatch control` schedules jobs per zone, tracks probe nodes and
//!   serves the API from ClickHouse.
//! - [`migrate`]: `portwatch migrate` applies `sql/` to ClickHouse.

pub mod control;
pub mod migrate;
pub mod probe;
pub mod project;

use std::future::Future;
use std::time::Duration;

use portwatch_ingest::KafkaSettings;
use portwatch_stores::ClickHouseStore;
use tokio::sync::watch;

use crate::Shutdown;

/// A stop flag that many tasks can watch, set when `shutdown` resolves.
pub fn stop_flag(shutdown: Shutdown) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    rx
}

/// Whether the stop flag is set.
pub fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Sleep `d`, or less if `stop` is set meanwhile. Returns false when stopping.
pub async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if stopping(stop) {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Run `op` until it succeeds, backing off from 200 ms to 5 s and logging each
/// failure; `None` when stopped first. Infrastructure faults (a broker or database
/// restarting) are waited out, never turned into lost work.
pub async fn retry<T, E, F, Fut>(what: &str, stop: &mut watch::Receiver<bool>, mut op: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if attempt > 0 {
                    tracing::info!(what, attempts = attempt + 1, "recovered");
                }
                return Some(v);
            }
            Err(err) => {
                attempt += 1;
                metrics::counter!("portwatch_retries_total", "what" => what.to_string()).increment(1);
                tracing::warn!(what, attempt, error = %err, retry_in_ms = delay.as_millis() as u64, "failed; retrying");
                if !pause(stop, delay).await {
                    return None;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Apply the migrations (waiting for ClickHouse to be reachable).
pub async fn ready_clickhouse(
    store: &ClickHouseStore,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    match retry("clickhouse migrate", stop, || async {
        match store.migrate().await {
            // A newer schema is not a fault to wait out.
            Err(e @ portwatch_stores::ClickHouseError::NewerSchema { .. }) => Ok(Err(e)),
            Err(e) => Err(e),
            Ok(report) => Ok(Ok(report)),
        }
    })
    .await
    {
        None => anyhow::bail!("stopped before ClickHouse was reachable"),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(report)) => {
            tracing::info!(database = %store.settings().database, schema = report.to, applied = ?report.applied, "clickhouse ready");
            Ok(())
        }
    }
}

/// Create the topics where missing (waiting for the broker to be reachable).
pub async fn ready_kafka(
    kafka: &KafkaSettings,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    match retry("kafka topics", stop, || {
        portwatch_ingest::kafka::ensure_topics(kafka, timeout)
    })
    .await
    {
        None => anyhow::bail!("stopped before the Kafka broker was reachable"),
        Some(()) => Ok(()),
    }
}
