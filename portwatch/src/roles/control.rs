//! `portwatch control`: the scale-out control plane (wiring). Schedules the monitoring tasks
//! and issues their jobs to the probe nodes of each zone (topic `jobs`, keyed by
//! zone), follows the control topic (heartbeats, leases, results) into ClickHouse,
//! serves the API from ClickHouse, and writes the episodes' MTTD / MTTR figures
//! there for the dashboards.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use portwatch_ingest::{KafkaJournal, TopicProducer};
use portwatch_stores::ClickHouseStore;
use tokio::sync::watch;

use super::{install_metrics, ready_clickhouse, ready_kafka, stop_flag};
use crate::cli::ControlArgs;
use crate::config::Config;
use crate::control::issuer::Issuer;
use crate::control::nodes::follow_control;
use crate::control::scheduler::Scheduler;
use crate::read_model::ClickHouseRead;
use crate::{InputError, Shutdown};

/// Retention: at start and then daily, drop the monthly partitions of raw
/// observations older than `keep_months`, and delete the jobs issued before then.
async fn retention(store: ClickHouseStore, keep_months: u32, mut stop: watch::Receiver<bool>) {
    loop {
        match store.drop_old_observations(keep_months, Utc::now()).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(partitions = ?dropped, keep_months, "retention: dropped old observation partitions")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "retention pass failed; next one in a day"),
        }
        match store.delete_old_jobs(keep_months, Utc::now()).await {
            Ok(0) => {}
            Ok(jobs) => tracing::info!(jobs, keep_months, "retention: deleting old jobs"),
            Err(err) => tracing::warn!(error = %err, "job retention failed; next pass in a day"),
        }
        if !super::pause(&mut stop, Duration::from_secs(24 * 3600)).await {
            return;
        }
    }
}

/// Run until `shutdown`.
pub async fn run(mut cfg: Config, args: ControlArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    if let Some(listen) = &args.listen {
        cfg.api_listen = listen.parse().map_err(|_| {
            InputError(format!(
                "--listen `{listen}`: expected IP:PORT, e.g. 127.0.0.1:7678"
            ))
        })?;
    }
    let mut stop = stop_flag(shutdown);
    let metrics = install_metrics(None).await?;
    let cfg = Arc::new(cfg);
    let so = &cfg.scaleout;
    let store = ClickHouseStore::new(so.clickhouse.clone())?;
    ready_clickhouse(&store, &mut stop).await?;
    let t = &so.kafka.topics;
    ready_kafka(
        &so.kafka,
        &[&t.jobs, &t.control, &t.alerts, &t.decisions],
        so.kafka_timeout,
        &mut stop,
    )
    .await?;
    let issuer = Arc::new(Issuer::new(
        store.clone(),
        TopicProducer::new(&so.kafka, &so.kafka.topics.jobs, so.kafka_timeout)?,
        cfg.asset_map(),
    ));
    let read = Arc::new(ClickHouseRead {
        store: store.clone(),
        stale_after_secs: so.probe.heartbeat.as_secs() * 3,
    });
    let journal = cfg.sealed(Arc::new(KafkaJournal::open(&so.kafka, so.kafka_timeout)?))?;
    let ledger = crate::notifier::ledger(&cfg, journal);
    let first_token = crate::notifier::bootstrap(&cfg, &ledger, &mut stop).await?;
    let ctx = crate::serve::context(&cfg, read.clone(), ledger.clone(), metrics);
    let figures = ctx.figures.clone();
    let limits = crate::blocks::Limits {
        bounds: ctx.bounds.clone(),
        assets: ctx.assets.clone(),
    };
    let server = crate::serve::bind(cfg.api_listen, &cfg, ctx, stop.clone()).await?;
    if let Some(token) = first_token {
        crate::notifier::show_first_token(&token, cfg.api_listen, &cfg.store_path)?;
    }
    tracing::info!(listen = %cfg.api_listen, brokers = %so.kafka.brokers, clickhouse = %portwatch_events::redact::url(&so.clickhouse.url), "control plane is up");

    let follower = tokio::spawn(follow_control(cfg.clone(), issuer.clone(), stop.clone()));
    let retention = tokio::spawn(retention(store.clone(), so.retention_months, stop.clone()));
    let (alert_feed, alert_rx) = tokio::sync::mpsc::unbounded_channel();
    let alerts_follower = tokio::spawn(crate::notifier::follow_alerts_topic(
        cfg.clone(),
        alert_feed,
        stop.clone(),
    ));
    let controller = tokio::spawn(crate::blocks::run(
        cfg.control.clone(),
        limits,
        ledger.clone(),
        read.clone(),
        stop.clone(),
    ));
    let reporter = tokio::spawn(crate::reporter::run(
        figures,
        ledger.clone(),
        Some(store.clone()),
        stop.clone(),
    ));
    let notifier = crate::notifier::spawn(&cfg, ledger.clone(), read.clone(), alert_rx, stop.clone())?;
    let scheduler = tokio::spawn(
        Scheduler::new(cfg.clone(), read.clone(), issuer.clone())
            .with_ledger(ledger)
            .run(stop.clone()),
    );
    server.await?;
    let _ = scheduler.await;
    let _ = notifier.await;
    let _ = controller.await;
    let _ = reporter.await;
    let _ = alerts_follower.await;
    let _ = retention.await;
    match follower.await {
        Ok(Err(err)) => tracing::error!(error = %format!("{err:#}"), "control follower failed"),
        Err(err) => tracing::error!(error = %err, "control follower task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("control plane stopped");
    Ok(())
}
