//! `portwatch control`: the scale-out control plane. Schedules the monitoring tasks
//! and issues their jobs to the probe nodes of each zone (topic `jobs`, keyed by
//! zone), follows the control topic (heartbeats, leases, results) into ClickHouse,
//! and serves the API from ClickHouse.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use portwatch_events::control::{Control, ControlKind, JobOrder};
use portwatch_events::{JobId, SCHEMA_VERSION};
use portwatch_probes::TargetSet;
use portwatch_stores::{ClickHouseStore, JobRow, ProbeNodeRow};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use super::{ready_clickhouse, ready_kafka, stop_flag};
use crate::cli::ControlArgs;
use crate::config::Config;
use crate::jobs::JobSpec;
use crate::read_model::ClickHouseRead;
use crate::scheduler::{Dispatch, Dispatched, Scheduler};
use crate::{InputError, Shutdown};
use futures::future::BoxFuture;
use futures::FutureExt;

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

/// Issues jobs to probe nodes and remembers what it issued.
pub struct Issuer {
    store: ClickHouseStore,
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
    jobs: Mutex<HashMap<JobId, JobRow>>,
    assets: portwatch_projections::Assets,
}

impl Dispatch for Issuer {
    fn dispatch(&self, spec: JobSpec) -> BoxFuture<'_, Dispatched> {
        async move {
            self.issue(spec).await;
            Dispatched::Handed
        }
        .boxed()
    }
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u32 {
    u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX)
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

impl Issuer {
    /// The ClickHouse store target sets are read from.
    pub fn store(&self) -> &ClickHouseStore {
        &self.store
    }

    /// Split `spec` by the zone of each target's asset and send one job per zone.
    /// A job that cannot be sent is logged and counted; the task's next run issues
    /// it again.
    pub async fn issue(&self, spec: JobSpec) {
        let assets = &self.assets;
        let mut by_zone: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for ip in spec.targets {
            match assets.lookup(ip) {
                Some(asset) => by_zone.entry(asset.zone.clone()).or_default().push(ip),
                None => tracing::warn!(%ip, "target outside every asset; not issued"),
            }
        }
        let single = by_zone.len() == 1;
        for (zone, ips) in by_zone {
            let order = JobOrder {
                v: SCHEMA_VERSION,
                id: if single { spec.job } else { JobId::new() },
                zone: zone.clone(),
                task: spec.task,
                targets: TargetSet::from_ips(ips.iter().copied())
                    .nets()
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                ports: spec.ports.clone(),
                issued_at: Utc::now(),
            };
            let body = serde_json::to_string(&order).unwrap_or_default();
            let sent = self
                .producer
                .send(
                    FutureRecord::to(&self.topic).key(&zone).payload(&body),
                    self.timeout,
                )
                .await;
            if let Err((err, _)) = sent {
                metrics::counter!("portwatch_jobs_issue_failed_total").increment(1);
                tracing::error!(zone = %zone, task = %spec.task, error = %err, "cannot issue job; the next run of the task retries");
                continue;
            }
            metrics::counter!("portwatch_jobs_issued_total", "task" => spec.task.as_str()).increment(1);
            tracing::info!(job = %order.id, zone = %zone, task = %spec.task, targets = ips.len(), ports = spec.ports.len(), "job issued");
            let row = JobRow {
                id: order.id.to_string(),
                zone,
                task: spec.task.as_str().to_string(),
                state: "queued".into(),
                node: String::new(),
                targets: ips.len() as u64,
                issued_at: now_secs(),
                updated_at: now_secs(),
                detail: "{}".into(),
                ver: now_ms(),
            };
            self.jobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(order.id, row.clone());
            if let Err(err) = self.store.write_jobs(&[row]).await {
                tracing::warn!(error = %err, "cannot record job in clickhouse");
            }
        }
    }

    /// Apply a control message to the job it names; the updated row, if any.
    fn job_update(&self, msg: &Control) -> Option<JobRow> {
        let (job, state, detail) = match &msg.kind {
            ControlKind::JobLeased { job, .. } => (*job, "leased", serde_json::json!({})),
            ControlKind::JobFinished { job, hosts, open } => {
                (*job, "done", serde_json::json!({"hosts": hosts, "open": open}))
            }
            ControlKind::JobFailed { job, error } => (*job, "failed", serde_json::json!({"error": error})),
            ControlKind::NodeHeartbeat { .. } => return None,
        };
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let row = jobs.entry(job).or_insert_with(|| JobRow {
            id: job.to_string(),
            zone: msg.zone.clone(),
            task: String::new(),
            state: String::new(),
            node: String::new(),
            targets: 0,
            issued_at: 0,
            updated_at: 0,
            detail: "{}".into(),
            ver: 0,
        });
        row.state = state.to_string();
        row.node.clone_from(&msg.node);
        row.updated_at = u32::try_from(msg.at.timestamp()).unwrap_or(0);
        row.detail = detail.to_string();
        row.ver = row
            .ver
            .max(u64::try_from(msg.at.timestamp_millis()).unwrap_or(0))
            .max(now_ms());
        Some(row.clone())
    }
}

/// Follow the control topic into ClickHouse (probe nodes, job states).
async fn follow_control(
    cfg: Arc<Config>,
    issuer: Arc<Issuer>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let so = &cfg.scaleout;
    let mut consumer_cfg = so
        .kafka
        .consumer_config(&format!("{}-control", so.projector.group));
    consumer_cfg.set("enable.auto.commit", "true");
    let consumer: StreamConsumer = consumer_cfg.create()?;
    consumer.subscribe(&[&so.kafka.topics.control])?;
    loop {
        let msg = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let msg = match msg {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(error = %err, "control consumer error");
                continue;
            }
        };
        let text = String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string();
        let _ = consumer.store_offset_from_message(&msg);
        let control = match Control::from_json(&text) {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable control message skipped");
                continue;
            }
        };
        if let ControlKind::NodeHeartbeat {
            running_job,
            spooled,
            spool_overflow,
            ..
        } = &control.kind
        {
            let row = ProbeNodeRow {
                node: control.node.clone(),
                zone: control.zone.clone(),
                last_heartbeat: u32::try_from(control.at.timestamp()).unwrap_or(0),
                running_job: running_job.map(|j| j.to_string()).unwrap_or_default(),
                spooled: *spooled,
                spool_overflow: *spool_overflow,
                body: text.clone(),
                ver: u64::try_from(control.at.timestamp_millis()).unwrap_or(0),
            };
            if let Err(err) = issuer.store.write_nodes(&[row]).await {
                tracing::warn!(error = %err, "cannot record heartbeat");
            }
        }
        if let Some(row) = issuer.job_update(&control) {
            if let Err(err) = issuer.store.write_jobs(&[row]).await {
                tracing::warn!(error = %err, "cannot record job state");
            }
        }
    }
}

/// Retention by partition drop: at start and then daily, drop the monthly
/// partitions of raw observations older than `keep_months`.
async fn retention(store: ClickHouseStore, keep_months: u32, mut stop: watch::Receiver<bool>) {
    loop {
        match store.drop_old_observations(keep_months, Utc::now()).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(partitions = ?dropped, keep_months, "retention: dropped old observation partitions")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "retention pass failed; next one in a day"),
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
                "--listen `{listen}`: expected IP:PORT, e.g. 127.0.0.1:8080"
            ))
        })?;
    }
    let mut stop = stop_flag(shutdown);
    let metrics = install_metrics(None).await?;
    let cfg = Arc::new(cfg);
    let so = &cfg.scaleout;
    let store = ClickHouseStore::new(so.clickhouse.clone());
    ready_clickhouse(&store, &mut stop).await?;
    ready_kafka(&so.kafka, so.kafka_timeout, &mut stop).await?;
    let producer: FutureProducer = so.kafka.producer_config(so.kafka_timeout).create()?;
    let issuer = Arc::new(Issuer {
        store: store.clone(),
        producer,
        topic: so.kafka.topics.jobs.clone(),
        timeout: so.kafka_timeout,
        jobs: Mutex::new(HashMap::new()),
        assets: cfg.asset_map(),
    });
    let read = Arc::new(ClickHouseRead {
        store: store.clone(),
        stale_after_secs: so.probe.heartbeat.as_secs() * 3,
    });
    let server = crate::serve::bind(
        cfg.api_listen,
        crate::serve::context(&cfg, read.clone(), metrics),
        stop.clone(),
    )
    .await?;
    tracing::info!(listen = %cfg.api_listen, brokers = %so.kafka.brokers, clickhouse = %so.clickhouse.url, "control plane is up");

    let follower = tokio::spawn(follow_control(cfg.clone(), issuer.clone(), stop.clone()));
    let retention = tokio::spawn(retention(store.clone(), so.retention_months, stop.clone()));
    let scheduler = tokio::spawn(Scheduler::new(cfg.clone(), read.clone(), issuer.clone()).run(stop.clone()));
    server.await?;
    let _ = scheduler.await;
    let _ = retention.await;
    match follower.await {
        Ok(Err(err)) => tracing::error!(error = %format!("{err:#}"), "control follower failed"),
        Err(err) => tracing::error!(error = %err, "control follower task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("control plane stopped");
    Ok(())
}
