//! Following the probe nodes: their heartbeats become `probe_nodes` rows, their
//! leases and results update the jobs' rows (scale-out).

use std::sync::Arc;

use portwatch_events::control::{Control, ControlKind};
use portwatch_ingest::{Acks, TopicConsumer};
use portwatch_stores::ProbeNodeRow;
use tokio::sync::watch;

use super::issuer::Issuer;
use crate::config::Config;

/// Follow the control topic into ClickHouse (probe nodes, job states).
pub async fn follow_control(
    cfg: Arc<Config>,
    issuer: Arc<Issuer>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let so = &cfg.scaleout;
    let group = format!("{}-control", so.projector.group);
    let consumer = TopicConsumer::join(&so.kafka, &group, &so.kafka.topics.control, Acks::Auto, &[])?;
    loop {
        let msg = tokio::select! {
            m = consumer.next() => m,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let msg = match msg {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(error = %err, "control consumer error");
                continue;
            }
        };
        let text = msg.payload;
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
            if let Err(err) = issuer.store().write_nodes(&[row]).await {
                tracing::warn!(error = %err, "cannot record heartbeat");
            }
        }
        if let Some(row) = issuer.job_update(&control).await {
            if let Err(err) = issuer.store().write_jobs(&[row]).await {
                tracing::warn!(error = %err, "cannot record job state");
            }
        }
    }
}
