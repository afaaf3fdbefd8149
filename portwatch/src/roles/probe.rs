//! `portwatch probe --zone Z`: a probe node of the scale-out deployment.
//!
//! The leader leases each chunk of a pass to one idle probe node of its zone, as an
//! order addressed to it on the jobs topic (see `portwatch_work::issuer`); each node reads
//! the topic in a consumer group of its own and runs the orders addressed to it, one
//! at a time: it announces the attempt on the control topic, heartbeats while it
//! scans (which renews the lease), reports the result, and commits the order's
//! offset. A node that dies mid-chunk stops heartbeating: once the lease runs out
//! the leader gives the chunk to another node; an order read after its lease ran
//! out (a node that was down) is skipped.
//!
//! Observations go through the local spool ([`SpoolLog`]): recorded once on disk,
//! delivered to Kafka in order when the broker is reachable. The node refuses any job
//! target outside its own configured asset scope.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use portwatch_events::control::{Control, ControlKind, JobOrder};
use portwatch_events::{JobId, SCHEMA_VERSION};
use portwatch_ingest::{Acks, EventLog, SpoolLog, SpoolSettings, TopicConsumer, TopicProducer};
use tokio::sync::{watch, Notify};

use super::{ready_kafka, stop_flag};
use crate::cli::ProbeArgs;
use crate::config::Config;
use crate::{InputError, Shutdown};
use portwatch_work::jobs::{run_job, Appender, JobBoard, JobContext, JobSpec};

struct Node {
    name: String,
    zone: String,
    control: TopicProducer,
    spool: Arc<SpoolLog>,
    running: Mutex<Option<JobId>>,
}

impl Node {
    async fn report(&self, kind: ControlKind) {
        let msg = Control {
            v: SCHEMA_VERSION,
            node: self.name.clone(),
            zone: self.zone.clone(),
            at: Utc::now(),
            kind,
        };
        let body = serde_json::to_string(&msg).unwrap_or_default();
        // Control messages are status, not observations: when the broker is down
        // they are dropped (the next heartbeat says the same, newer).
        if let Err(err) = self.control.send(&self.name, &body).await {
            tracing::debug!(error = %err, "control message not delivered");
        }
    }

    async fn heartbeat(&self) {
        let stats = self.spool.stats();
        let running_job = *self.running.lock().unwrap_or_else(|p| p.into_inner());
        metrics::gauge!("portwatch_spool_events").set(stats.spooled as f64);
        self.report(ControlKind::NodeHeartbeat {
            running_job,
            spooled: stats.spooled,
            spool_overflow: stats.refused,
            delivered: stats.delivered,
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .await;
    }
}

/// The longest a starting node waits for its share of the jobs topic before its
/// first heartbeat.
const JOIN_WAIT: Duration = Duration::from_secs(60);

/// Run until `shutdown`.
pub async fn run(mut cfg: Config, args: ProbeArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    if let Some(name) = &args.node {
        if name.trim().is_empty() {
            return Err(InputError("--node: must not be empty".into()).into());
        }
        cfg.node = name.trim().to_string();
    }
    let mut stop = stop_flag(shutdown);
    super::install_metrics(args.metrics.as_deref()).await?;
    let so = cfg.scaleout.clone();
    let zone = args.zone.clone().unwrap_or_else(|| so.probe.zone.clone());
    if zone.trim().is_empty() {
        return Err(InputError("--zone: must not be empty".into()).into());
    }
    let spool_path = args
        .spool
        .clone()
        .or_else(|| so.probe.spool_path.clone())
        .unwrap_or_else(|| cfg.store_path.join(format!("spool-{zone}.db")));
    let t = &so.kafka.topics;
    ready_kafka(
        &so.kafka,
        &[&t.jobs, &t.observations, &t.control],
        so.kafka_timeout,
        &mut stop,
    )
    .await?;

    let spool = Arc::new(SpoolLog::open(
        SpoolSettings {
            path: spool_path.clone(),
            max_bytes: so.probe.spool_max_bytes,
            produce_timeout: so.kafka_timeout,
        },
        &so.kafka,
    )?);
    cfg.scan.check_source()?;
    let scanner = Arc::new(cfg.scan.scanner().context("scan.mode")?);
    let pinger = Arc::new(cfg.scan.pinger().context("scan.mode")?);
    let log: Arc<dyn EventLog> = spool.clone();
    let ctx = JobContext {
        node: cfg.node.clone(),
        scanner,
        pinger,
        scope: Arc::new(cfg.scope.clone()),
        appender: Appender::new(log, Arc::new(Notify::new())),
        board: Arc::new(JobBoard::default()),
        detect: cfg.service.detect.clone(),
        detect_concurrency: cfg.service.concurrency,
        policy: cfg.service.policy.clone(),
    };
    let node = Arc::new(Node {
        name: cfg.node.clone(),
        zone: zone.clone(),
        control: TopicProducer::new(&so.kafka, &so.kafka.topics.control, Duration::from_secs(5))?,
        spool: spool.clone(),
        running: Mutex::new(None),
    });

    // Each node reads the orders in a group of its own and takes those addressed to
    // it: the leader leases each chunk to one idle node (see portwatch_work::issuer).
    let group = format!(
        "{}probe-{zone}-{}",
        so.kafka.topics.jobs.trim_end_matches("jobs"),
        cfg.node
    );
    // An order is committed once run (or skipped); a chunk can take a while.
    let jobs = TopicConsumer::join(
        &so.kafka,
        &group,
        &so.kafka.topics.jobs,
        Acks::Manual,
        &[("max.poll.interval.ms", "3600000"), ("fetch.wait.max.ms", "100")],
    )?;
    tracing::info!(node = %cfg.node, zone = %zone, group = %group, spool = %spool_path.display(), mode = ?ctx.scanner.mode(), "probe node started");

    let jobs = Arc::new(jobs);
    let beat = {
        let node = node.clone();
        let mut stop = stop.clone();
        let every = so.probe.heartbeat;
        let jobs = jobs.clone();
        tokio::spawn(async move {
            // The leader hands chunks to the nodes it hears from: the first word
            // waits until the orders can reach this node (its group gave it the
            // topic's partitions), so that none lapses unread meanwhile.
            let joining = tokio::time::Instant::now();
            while !jobs.assigned() && joining.elapsed() < JOIN_WAIT {
                if !super::pause(&mut stop, Duration::from_millis(100)).await {
                    return;
                }
            }
            if !jobs.assigned() {
                tracing::warn!(waited = ?JOIN_WAIT, "the jobs topic's partitions are not assigned yet; reporting in anyway");
            }
            loop {
                node.heartbeat().await;
                if !super::pause(&mut stop, every).await {
                    return;
                }
            }
        })
    };

    loop {
        let msg = tokio::select! {
            m = jobs.next() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(error = %err, "jobs consumer error");
                continue;
            }
        };
        match JobOrder::from_json(&msg.payload) {
            Err(err) => tracing::error!(offset = msg.offset, error = %err, "undecodable job skipped"),
            Ok(order) if order.zone != zone || order.node.as_ref().is_some_and(|n| *n != cfg.node) => {
                tracing::trace!(job = %order.id, zone = %order.zone, node = ?order.node, "order for another node");
            }
            Ok(order) if order.lease_until.is_some_and(|until| until < Utc::now()) => {
                // Read after its lease ran out (this node was down or behind): the
                // chunk went to another node.
                tracing::info!(job = %order.id, "order read after its lease ran out; skipped");
            }
            Ok(order) => {
                let done = run_order(&cfg, &ctx, &node, order, &mut stop).await;
                if !done {
                    // Stopped mid-chunk: left uncommitted, it runs again at the next start
                    // if its lease still holds then (else the leader gave it to another).
                    break;
                }
            }
        }
        if let Err(err) = jobs.commit(&msg) {
            tracing::warn!(error = %err, "job offset commit failed; the job may run again");
        }
    }
    beat.abort();
    tracing::info!(
        spooled = spool.stats().spooled,
        "probe node stopping; giving the spool a moment to drain"
    );
    let drained = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.wait_drained(Duration::from_secs(5)))
            .await
            .unwrap_or(false)
    };
    if !drained {
        tracing::warn!(
            spooled = spool.stats().spooled,
            "events stay in the spool and are sent at next start"
        );
    }
    spool.close();
    Ok(())
}

/// Run one job; false when stopped before it finished.
async fn run_order(
    cfg: &Config,
    ctx: &JobContext,
    node: &Node,
    order: JobOrder,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let targets = match cfg.scope.check(&order.targets, true) {
        Ok(t) => t,
        Err(err) => {
            tracing::error!(job = %order.id, error = %err, "job refused: target outside this node's asset scope");
            node.report(ControlKind::JobFailed {
                job: order.id,
                error: format!("refused: {err}"),
            })
            .await;
            return true;
        }
    };
    *node.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(order.id);
    node.report(ControlKind::JobLeased {
        job: order.id,
        task: order.task,
    })
    .await;
    let spec = JobSpec {
        job: order.id,
        task: order.task,
        targets: targets.iter().collect(),
        ports: order.ports.clone(),
        chunk: order.chunk,
    };
    let result = tokio::select! {
        r = run_job(ctx, spec) => Some(r),
        _ = stop.wait_for(|s| *s) => None,
    };
    *node.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    match result {
        None => false,
        Some(Ok(record)) => {
            node.report(ControlKind::JobFinished {
                job: order.id,
                hosts: record.hosts_done,
                open: record.open_found,
            })
            .await;
            true
        }
        Some(Err(err)) => {
            node.report(ControlKind::JobFailed {
                job: order.id,
                error: format!("{err:#}"),
            })
            .await;
            true
        }
    }
}
