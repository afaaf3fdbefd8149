//! The roles: each subcommand that runs until stopped, wired from the parts (log
//! engines in `ingest`, stores in `stores`, the projector, the API, control).
//!
//! - [`up`]: `portwatch up`, the embedded all-in-one (no servers).
//!
//! The scale-out roles run the same folds, probes and API with Kafka as the event
//! log and ClickHouse as the store:
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
pub mod up;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use portwatch_ingest::KafkaSettings;
use portwatch_stores::ClickHouseStore;
use tokio::sync::watch;

use crate::{InputError, Shutdown};
pub use portwatch_projector::{pause, retry, stopping};

/// A stop flag that many tasks can watch, set when `shutdown` resolves.
pub fn stop_flag(shutdown: Shutdown) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    rx
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

/// Wait for the brokers, then make sure portwatch's topics are there (creating the
/// missing ones where this user may). A refusal (credentials, an untrusted broker
/// certificate, a plaintext client at a TLS listener) ends the role at once with
/// the reason: waiting would not change it.
///
/// `needed` names the topics the role uses (its user may see no others).
pub async fn ready_kafka(
    kafka: &KafkaSettings,
    needed: &[&str],
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use portwatch_ingest::LogError;
    let outcome = retry("kafka", stop, || async {
        let settings = kafka.clone();
        let preflight = tokio::task::spawn_blocking(move || portwatch_ingest::kafka::preflight(&settings, timeout))
            .await
            .map_err(|e| anyhow::anyhow!("kafka preflight task: {e}"))?;
        match preflight {
            Err(refused @ LogError::Refused { .. }) => Ok(Err(refused)),
            Err(other) => Err(anyhow::Error::from(other)),
            Ok(reachable) if !reachable.missing.iter().any(|t| needed.contains(&t.as_str())) => Ok(Ok(())),
            Ok(reachable) => {
                tracing::info!(missing = ?reachable.missing, "kafka topics missing; creating them");
                portwatch_ingest::kafka::ensure_topics(kafka, timeout)
                    .await
                    .map(|_| Ok(()))
                    .with_context(|| {
                        format!(
                            "topics {} are missing or hidden from this user: run `portwatch migrate --topics` as a user who may create them",
                            reachable.missing.join(", ")
                        )
                    })
            }
        }
    })
    .await;
    match outcome {
        None => anyhow::bail!("stopped before the Kafka broker was reachable"),
        Some(Err(refused)) => Err(refused.into()),
        Some(Ok(())) => Ok(()),
    }
}

/// Install the Prometheus recorder and, when `listen` is given, serve `/metrics`
/// there (probe nodes and projectors; the control plane serves it with its API).
pub async fn install_metrics(listen: Option<&str>) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus metrics recorder")?;
    if let Some(listen) = listen {
        let addr: SocketAddr = listen
            .parse()
            .map_err(|_| InputError(format!("--metrics `{listen}`: expected IP:PORT")))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
        let h = handle.clone();
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let h = h.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        tracing::info!(listen = %addr, "metrics on /metrics");
    }
    Ok(handle)
}
