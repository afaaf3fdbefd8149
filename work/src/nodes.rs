//! Following the probe nodes: their heartbeats become `probe_nodes` rows, their
//! leases and results update the jobs' rows (scale-out).

use std::sync::Arc;

use portwatch_events::control::{Control, ControlKind};
use portwatch_ingest::{Acks, TopicConsumer};
use portwatch_stores::{JobRow, ProbeNodeRow};
use tokio::sync::watch;

use crate::issuer::Issuer;

/// Follow the control topic (`topic` of `kafka`, in consumer group `group`) into
/// the issuer's board and ClickHouse (probe nodes, job states).
pub async fn follow_control(
    kafka: &portwatch_ingest::KafkaSettings,
    group: &str,
    topic: &str,
    issuer: Arc<Issuer>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), portwatch_ingest::LogError> {
    // Read at once: an idle node gets its next chunk as soon as it reports the last.
    let consumer = TopicConsumer::join(kafka, group, topic, Acks::Auto, &[("fetch.wait.max.ms", "100")])?;
    // Rows are written behind the follower, batched: a slow ClickHouse must not
    // delay the heartbeats that renew the nodes' leases.
    let (rows, mut pending) =
        tokio::sync::mpsc::unbounded_channel::<(Option<ProbeNodeRow>, Option<JobRow>)>();
    let store = issuer.store().clone();
    let writer = tokio::spawn(async move {
        while let Some(first) = pending.recv().await {
            let (mut nodes, mut jobs) = (Vec::new(), Vec::new());
            let mut add = |(node, job): (Option<ProbeNodeRow>, Option<JobRow>)| {
                nodes.extend(node);
                jobs.extend(job);
            };
            add(first);
            while let Ok(more) = pending.try_recv() {
                add(more);
            }
            if !nodes.is_empty() {
                if let Err(err) = store.write_nodes(&nodes).await {
                    tracing::warn!(error = %err, "cannot record heartbeats");
                }
            }
            if !jobs.is_empty() {
                if let Err(err) = store.write_jobs(&jobs).await {
                    tracing::warn!(error = %err, "cannot record job states");
                }
            }
        }
    });
    loop {
        let msg = tokio::select! {
            m = consumer.next() => m,
            _ = stop.wait_for(|s| *s) => break,
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
        // The board first (a heartbeat renews its node's lease), the rows after:
        // a slow ClickHouse must not make a living node's lease run out.
        let updated = issuer.job_update(&control).await;
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
            let _ = rows.send((Some(row), None));
        }
        if let Some(row) = updated {
            let _ = rows.send((None, Some(row)));
        }
    }
    // What was read is written before the term ends.
    drop(rows);
    let _ = writer.await;
    Ok(())
}
