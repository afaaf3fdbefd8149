//! `portwatch project`: the one projector loop (`portwatch_projector`) wired to a
//! share of the observations topic (a Kafka consumer group, `ingest`) and to
//! ClickHouse (`stores`), with the alerts topic as the outlet of written alerts.
//!
//! Instances with the same `[projector] group` share the topic's partitions; each
//! owns the fold state of its partitions (one host's events live in one partition,
//! so partitions fold independently and together give the same state as one fold
//! over everything). See the projector crate for effectively-once without
//! transactions.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_ingest::{GroupReader, TopicProducer};
use portwatch_projections::Alert;
use portwatch_projector::{pause, AlertOutlet, Projector, Settings};
use portwatch_stores::{ClickHouseSink, ClickHouseStore};
use tokio::sync::watch;

use super::{ready_clickhouse, ready_kafka, stop_flag};
use crate::cli::ProjectArgs;
use crate::config::Config;
use crate::Shutdown;

/// The alerts topic, keyed by host address.
struct AlertsTopic(TopicProducer);

impl AlertOutlet for AlertsTopic {
    fn publish<'a>(&'a self, alerts: Vec<Alert>, mut stop: watch::Receiver<bool>) -> BoxFuture<'a, bool> {
        async move {
            let mut pending: Vec<(String, String)> = alerts
                .iter()
                .map(|a| (a.ip.to_string(), serde_json::to_string(a).unwrap_or_default()))
                .collect();
            let mut delay = Duration::from_millis(200);
            while !pending.is_empty() {
                // All in flight at once; only the unacknowledged ones go again.
                let results = self.0.send_all(&pending).await;
                let mut failed = Vec::new();
                for (record, result) in pending.into_iter().zip(results) {
                    if let Err(err) = result {
                        tracing::warn!(error = %err, "alert not delivered to the alerts topic; retrying");
                        failed.push(record);
                    }
                }
                pending = failed;
                if !pending.is_empty() && !pause(&mut stop, delay).await {
                    return false;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            true
        }
        .boxed()
    }
}

/// Run until `shutdown`.
pub async fn run(cfg: Config, args: ProjectArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut stop = stop_flag(shutdown);
    crate::roles::install_metrics(args.metrics.as_deref()).await?;
    let so = &cfg.scaleout;
    let group = args.group.clone().unwrap_or_else(|| so.projector.group.clone());
    let store = ClickHouseStore::new(so.clickhouse.clone())?;
    ready_clickhouse(&store, &mut stop).await?;
    let t = &so.kafka.topics;
    ready_kafka(
        &so.kafka,
        &[&t.observations, &t.alerts, &t.dead_letter],
        so.kafka_timeout,
        &mut stop,
    )
    .await?;
    let reader = GroupReader::join(&so.kafka, &group, so.kafka_timeout)?;
    let alerts = TopicProducer::new(&so.kafka, &so.kafka.topics.alerts, so.kafka_timeout)?;
    let topic = so.kafka.topics.observations.clone();
    tracing::info!(group = %group, topic = %topic, "projector started");
    let settings = Settings {
        batch: so.projector.batch,
        batch_wait: so.projector.batch_wait,
        checkpoint_interval: so.projector.checkpoint_interval,
        fold: cfg.projection.clone(),
        drain_on_stop: false,
        accept_gap: args.accept_gap,
    };
    let sink = Arc::new(ClickHouseSink::new(store, group, topic));
    let folded = Projector::new(reader, sink, settings)
        .with_outlet(Arc::new(AlertsTopic(alerts)))
        .run(stop)
        .await;
    if let Err(gap) = folded {
        return Err(anyhow::Error::from(gap).context(
            "the observations after this group's checkpoint expired before any projector folded them \
             (projectors stopped for longer than [kafka] observations_retention?); those events are lost, \
             and the next scans correct the hosts they were about: start `portwatch project --accept-gap` \
             once to fold on from where the topic starts",
        ));
    }
    tracing::info!("projector stopped");
    Ok(())
}
