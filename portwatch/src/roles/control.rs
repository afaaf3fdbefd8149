//! `portwatch control`: the scale-out control plane (wiring). Every instance serves the
//! API from ClickHouse and follows the journal of decisions; the instance holding the
//! lease ([`portwatch_ingest::Lease`]) also schedules the monitoring tasks and issues
//! their jobs to the probe nodes of each zone (topic `jobs`, keyed by zone), follows
//! the control topic (heartbeats, leases, results) into ClickHouse, notifies, applies
//! blocks, writes the episodes' MTTD / MTTR figures for the dashboards and runs
//! retention.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use portwatch_ingest::{KafkaJournal, TopicProducer};
use portwatch_stores::ClickHouseStore;
use portwatch_work::Work;
use tokio::sync::watch;

use super::{install_metrics, ready_clickhouse, ready_kafka, stop_flag};
use crate::cli::ControlArgs;
use crate::config::Config;
use crate::read_model::ClickHouseRead;
use crate::{InputError, Shutdown};
use portwatch_work::issuer::{ClickHousePasses, Issuer};
use portwatch_work::lead::Parts;
use portwatch_work::nodes::follow_control;
use portwatch_work::schedule::Scheduler;

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

/// Run until `shutdown`. Every instance serves the API and follows the journal;
/// the instance holding the lease ([`portwatch_ingest::Lease`]) also does what
/// must happen once per deployment (see [`portwatch_work::lead`]).
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
    let read = Arc::new(ClickHouseRead {
        store: store.clone(),
        stale_after_secs: so.probe.heartbeat.as_secs() * 3,
    });
    let journal = cfg.sealed(Arc::new(KafkaJournal::open(&so.kafka, so.kafka_timeout)?))?;
    let ledger = crate::notifier::ledger(&cfg, journal);
    crate::notifier::read_journal(&ledger, &mut stop).await?;
    // Checked at start, also on a standby: a bad channel CA ends the start.
    let senders = crate::notifier::senders(&cfg)?;
    let ctx = crate::serve::context(&cfg, true, read.clone(), ledger.clone(), metrics)?;
    let figures = ctx.figures.clone();
    let planned = ctx.clone();
    let limits = portwatch_work::blocks::Limits {
        bounds: ctx.bounds.clone(),
        assets: ctx.assets.clone(),
    };
    let server = crate::serve::bind(cfg.api_listen, &cfg, ctx, stop.clone()).await?;
    tracing::info!(listen = %cfg.api_listen, brokers = %so.kafka.brokers, clickhouse = %portwatch_events::redact::url(&so.clickhouse.url), "control plane is up");

    // The lease outlives the leader's parts: it is given up only once they stopped.
    let lease = portwatch_ingest::Lease::join(
        &so.kafka,
        &format!("{}-leader", so.projector.group),
        cfg.control.lease_timeout,
    )?;
    let (release, released) = watch::channel(false);
    let journal_follower = tokio::spawn(crate::notifier::follow_journal(
        ledger.clone(),
        lease.held(),
        stop.clone(),
    ));

    let mut held = lease.held();
    tokio::spawn(async move {
        loop {
            metrics::gauge!("portwatch_control_leader").set(if *held.borrow_and_update() {
                1.0
            } else {
                0.0
            });
            if held.changed().await.is_err() {
                return;
            }
        }
    });
    let mut parts = Parts::new(lease.held(), stop.clone());
    // The leader records what the deployment starts with: the allow-list, and on
    // the very first start the admin's token.
    let (c, l) = (cfg.clone(), ledger.clone());
    parts.spawn("bootstrap", move |mut term| {
        let (cfg, ledger) = (c.clone(), l.clone());
        async move {
            // Retried while the term lasts: a deployment must not be left without
            // its first admin token by one failed append.
            while let Err(err) = seed_as_leader(&cfg, &ledger).await {
                tracing::error!(error = %format!("{err:#}"), "cannot record the allow-list or the first token; retrying");
                if !crate::roles::pause(&mut term, std::time::Duration::from_secs(5)).await {
                    return;
                }
            }
        }
    });
    let (c, s, r, l) = (cfg.clone(), store.clone(), read.clone(), ledger.clone());
    parts.spawn("scheduler", move |term| {
        schedule(c.clone(), s.clone(), r.clone(), l.clone(), term)
    });
    let (c, r, l) = (cfg.clone(), read.clone(), ledger.clone());
    parts.spawn("notifier", move |term| {
        notify(c.clone(), senders.clone(), r.clone(), l.clone(), term)
    });
    let (c, r, l) = (cfg.clone(), read.clone(), ledger.clone());
    parts.spawn("blocks", move |term| {
        portwatch_work::blocks::run(c.control.clone(), limits.clone(), l.clone(), r.clone(), term)
    });
    let (s, l) = (store.clone(), ledger.clone());
    parts.spawn("reporter", move |term| {
        crate::reporter::run(figures.clone(), l.clone(), Some(s.clone()), term)
    });
    parts.spawn("planner", move |term| {
        crate::reporter::plan(planned.clone(), term)
    });
    let (s, keep) = (store.clone(), so.retention_months);
    parts.spawn("retention", move |term| retention(s.clone(), keep, term));
    let lease = tokio::spawn(lease.run(released));
    server.await?;
    parts.join().await;
    release.send_replace(true);
    let _ = lease.await;
    let _ = journal_follower.await;
    tracing::info!("control plane stopped");
    Ok(())
}

/// One term of scheduling: jobs issued to the probe nodes, their reports followed
/// into ClickHouse.
async fn schedule(
    cfg: Arc<Config>,
    store: ClickHouseStore,
    read: Arc<ClickHouseRead>,
    ledger: portwatch_ledger::Handle,
    term: watch::Receiver<bool>,
) {
    let so = &cfg.scaleout;
    let producer = match TopicProducer::new(&so.kafka, &so.kafka.topics.jobs, so.kafka_timeout) {
        Ok(p) => p,
        Err(err) => {
            tracing::error!(error = %err, "cannot produce jobs; not scheduling until the next term");
            return;
        }
    };
    // A chunk's lease lasts three heartbeats of its node: as long as the node
    // counts as alive.
    let lease_for = so.probe.heartbeat * 3;
    let work = Arc::new(Work::new(
        lease_for,
        Box::new(ClickHousePasses::new(store.clone())),
    ));
    let issuer = Arc::new(Issuer::new(store, producer, work.clone(), lease_for));
    issuer.close_abandoned().await;
    let follower = {
        let (cfg, issuer, term) = (cfg.clone(), issuer.clone(), term.clone());
        tokio::spawn(async move {
            let so = &cfg.scaleout;
            let group = format!("{}-control", so.projector.group);
            follow_control(&so.kafka, &group, &so.kafka.topics.control, issuer, term).await
        })
    };
    let dispatcher = tokio::spawn(issuer.clone().run(term.clone()));
    let zones = Arc::new(cfg.asset_map());
    Scheduler::new(Arc::new(cfg.schedule_settings()), read, work, Some(zones))
        .with_ledger(ledger)
        .run(term)
        .await;
    let _ = dispatcher.await;
    match follower.await {
        Ok(Err(err)) => tracing::error!(error = %format!("{err:#}"), "control follower failed"),
        Err(err) => tracing::error!(error = %err, "control follower task failed"),
        Ok(Ok(())) => {}
    }
}

/// One term of notifying: the alerts topic feeds the notifier.
async fn notify(
    cfg: Arc<Config>,
    senders: portwatch_notify::Senders,
    read: Arc<ClickHouseRead>,
    ledger: portwatch_ledger::Handle,
    term: watch::Receiver<bool>,
) {
    let (feed, alerts) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(crate::notifier::follow_alerts_topic(
        cfg.clone(),
        feed,
        term.clone(),
    ));
    let _ = crate::notifier::spawn(&cfg, senders, ledger, read, alerts, term).await;
    let _ = follower.await;
}

/// The allow-list's approvals and, on the very first start, the admin's first
/// token (kept in this instance's data directory and shown once).
async fn seed_as_leader(cfg: &Config, ledger: &portwatch_ledger::Handle) -> anyhow::Result<()> {
    ledger.catch_up().await?;
    if let Some(token) = crate::notifier::seed(cfg, ledger).await? {
        crate::notifier::show_first_token(&token, cfg.api_listen, &cfg.store_path)?;
    }
    Ok(())
}
