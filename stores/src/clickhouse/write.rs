//! Writing: a projector batch's rows, checkpoints, job and probe node rows, and the
//! episodes' MTTD / MTTR figures and the deliveries of notifications.

use std::collections::HashMap;
use std::net::IpAddr;

use clickhouse::Row;
use portwatch_events::Timestamp;
use portwatch_projections::report::EpisodeReport;
use portwatch_projections::NotificationRecord;
use portwatch_projections::{FoldConfig, HostImage, State};
use serde::Serialize;

use super::rows::{
    json, secs, AlertRow, Checkpoint, CheckpointRead, CheckpointRow, DeliveryRow, EpisodeReportRow,
    EpisodeRow, HostImageRead, HostImageRow, HostStateRow, JobRow, PortStateRow, ProbeNodeRow,
};
use super::{ClickHouseError, ClickHouseStore};
use crate::batch::Batch;
use crate::query::{alert_key, episode_key, host_key, ip_key, port_key};

/// Host images per insert of a checkpoint.
const HOST_IMAGES_PER_INSERT: usize = 20_000;

impl ClickHouseStore {
    /// The last checkpoint of `group` for `topic`/`partition`.
    pub async fn checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Checkpoint>, ClickHouseError> {
        let rows = self
            .client
            .query("SELECT next_offset, state FROM projector_offsets FINAL WHERE consumer_group = ? AND topic = ? AND kpartition = ?")
            .bind(group)
            .bind(topic)
            .bind(partition)
            .fetch_all::<CheckpointRead>()
            .await
            .map_err(self.err("reading projector_offsets"))?;
        let Some(row) = rows.into_iter().max_by_key(|r| r.next_offset) else {
            return Ok(None);
        };
        let legacy_state = if row.state.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&row.state).map_err(|e| ClickHouseError::Corrupt {
                    table: "projector_offsets",
                    reason: format!("partition {partition}: {e}"),
                })?,
            )
        };
        Ok(Some(Checkpoint {
            next_offset: row.next_offset,
            legacy_state,
        }))
    }

    /// The fold state of `group`'s `partition` of `topic` from its host images, read
    /// as a stream, and the hosts whose image is ahead of `next_offset` (see
    /// `projector_state` in sql/005), with the offset each is at.
    pub async fn host_images(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        cfg: &FoldConfig,
        next_offset: u64,
    ) -> Result<(State, HashMap<IpAddr, u64>), ClickHouseError> {
        let mut cursor = self
            .client
            .query("SELECT image, ver FROM projector_state FINAL WHERE consumer_group = ? AND topic = ? AND kpartition = ?")
            .bind(group)
            .bind(topic)
            .bind(partition)
            .fetch::<HostImageRead>()
            .map_err(self.err("reading projector_state"))?;
        let mut state = State::new(cfg.clone());
        let mut ahead = HashMap::new();
        while let Some(row) = cursor.next().await.map_err(self.err("reading projector_state"))? {
            let image: HostImage =
                serde_json::from_str(&row.image).map_err(|e| ClickHouseError::Corrupt {
                    table: "projector_state",
                    reason: format!("partition {partition}: {e}"),
                })?;
            if row.ver > next_offset {
                ahead.insert(image.ip, row.ver);
            }
            state.restore_host(image);
        }
        Ok((state, ahead))
    }

    /// Store the images of hosts of `group`'s `partition` of `topic` as of the
    /// checkpoint at `next_offset` (before that checkpoint's offset is committed);
    /// answers the bytes of the images.
    pub async fn write_host_images(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        images: &[HostImage],
    ) -> Result<u64, ClickHouseError> {
        let mut bytes = 0u64;
        // In slices, so that a large checkpoint is not held as JSON all at once (a
        // retry rewrites the slices already written, at the same version).
        for slice in images.chunks(HOST_IMAGES_PER_INSERT) {
            let rows: Vec<HostImageRow> = slice
                .iter()
                .map(|image| HostImageRow {
                    consumer_group: group.to_string(),
                    topic: topic.to_string(),
                    kpartition: partition,
                    host: image.ip.to_string(),
                    image: json(image),
                    ver: next_offset,
                })
                .collect();
            bytes += rows.iter().map(|r| r.image.len() as u64).sum::<u64>();
            self.insert("projector_state", rows.iter()).await?;
        }
        Ok(bytes)
    }

    /// Write a batch's rows (not its checkpoint). The tables are written concurrently;
    /// the call succeeds only when every insert did (a retry rewrites all of them,
    /// which the row versions make harmless).
    pub async fn write(&self, batch: &Batch) -> Result<(), ClickHouseError> {
        let ports: Vec<PortStateRow> = batch
            .ports
            .values()
            .map(|v| PortStateRow {
                ip: v.row.ip.to_string(),
                proto: v.row.proto.as_str().to_string(),
                port: v.row.port,
                state: v.row.state.as_str().to_string(),
                first_seen: secs(v.row.first_seen),
                last_seen: secs(v.row.last_seen),
                last_change: secs(v.row.last_change),
                misses: v.row.misses,
                episode_id: v.row.episode_id.clone(),
                evidence: json(&v.row.evidence).trim_matches('"').to_string(),
                service: v.row.service.clone().unwrap_or_default(),
                product: v.row.product.clone().unwrap_or_default(),
                svc_version: v.row.version.clone().unwrap_or_default(),
                risk: v.row.risk.as_str().to_string(),
                ipkey: ip_key(v.row.ip),
                skey: port_key(&v.row),
                row: json(&v.row),
                kpartition: v.partition,
                ver: v.ver,
            })
            .collect();
        let episodes: Vec<EpisodeRow> = batch
            .episodes
            .values()
            .map(|v| EpisodeRow {
                id: v.row.id.clone(),
                ip: v.row.ip.to_string(),
                proto: v.row.proto.as_str().to_string(),
                port: v.row.port,
                opened_at: secs(v.row.opened_at),
                last_seen: secs(v.row.last_seen),
                last_negative_before_open: v.row.last_negative_before_open.map(secs),
                mttd_bound_secs: v.row.mttd_bound_secs,
                closed_at: v.row.closed_at.map(secs),
                duration_secs: v.row.duration_secs,
                observations: v.row.observations,
                ipkey: ip_key(v.row.ip),
                skey: episode_key(&v.row),
                row: json(&v.row),
                kpartition: v.partition,
                ver: v.ver,
            })
            .collect();
        let hosts: Vec<HostStateRow> = batch
            .hosts
            .values()
            .map(|v| HostStateRow {
                ip: v.row.ip.to_string(),
                alive: v.row.alive.map_or(-1, i8::from),
                last_alive: v.row.last_alive.map(secs),
                last_checked: v.row.last_checked.map(secs),
                scans: v.row.scans,
                open_ports: v.row.open_ports,
                wildcard: u8::from(v.row.wildcard),
                ipkey: ip_key(v.row.ip),
                skey: host_key(&v.row),
                row: json(&v.row),
                kpartition: v.partition,
                ver: v.ver,
            })
            .collect();
        let alerts: Vec<AlertRow> = batch
            .alerts
            .values()
            .map(|v| AlertRow {
                id: v.row.id.clone(),
                kind: v.row.kind.as_str().to_string(),
                severity: v.row.severity.as_str().to_string(),
                ip: v.row.ip.to_string(),
                proto: v.row.proto.as_str().to_string(),
                port: v.row.port,
                episode_id: v.row.episode_id.clone(),
                at: secs(v.row.at),
                risk: v.row.risk.as_str().to_string(),
                ipkey: ip_key(v.row.ip),
                skey: alert_key(&v.row),
                body: json(&v.row),
                kpartition: v.partition,
                ver: v.ver,
            })
            .collect();
        futures::try_join!(
            self.insert_all("observations", &batch.observations),
            self.insert_all("port_state", &ports),
            self.insert_all("episodes", &episodes),
            self.insert_all("hosts", &hosts),
            self.insert_all("alerts", &alerts),
        )?;
        Ok(())
    }

    async fn insert_all<T>(&self, table: &'static str, rows: &[T]) -> Result<(), ClickHouseError>
    where
        T: Row + Serialize,
        T: for<'b> Row<Value<'b> = T>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        self.insert(table, rows.iter()).await
    }

    /// Record that `group` has folded `partition` of `topic` up to `next_offset`
    /// (its host images are written).
    pub async fn commit_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        now: Timestamp,
    ) -> Result<(), ClickHouseError> {
        let row = CheckpointRow {
            consumer_group: group.to_string(),
            topic: topic.to_string(),
            kpartition: partition,
            next_offset,
            state: String::new(),
            written_at: secs(now),
            ver: next_offset,
        };
        self.insert("projector_offsets", [row].iter()).await
    }

    /// Upsert job rows.
    pub async fn write_jobs(&self, rows: &[JobRow]) -> Result<(), ClickHouseError> {
        self.insert("jobs", rows.iter()).await
    }

    /// Upsert probe node rows.
    pub async fn write_nodes(&self, rows: &[ProbeNodeRow]) -> Result<(), ClickHouseError> {
        self.insert("probe_nodes", rows.iter()).await
    }

    /// Upsert episodes' MTTD / MTTR figures at version `ver` (higher than any
    /// written before for them).
    pub async fn write_episode_reports(
        &self,
        reports: &[EpisodeReport],
        ver: u64,
    ) -> Result<(), ClickHouseError> {
        let rows: Vec<EpisodeReportRow> = reports
            .iter()
            .map(|r| EpisodeReportRow {
                episode_id: r.episode_id.clone(),
                ip: r.ip.to_string(),
                proto: r.proto.as_str().to_string(),
                port: r.port,
                risk: r.risk.as_str().to_string(),
                owner: r.owner.clone().unwrap_or_default(),
                system: r.system.clone().unwrap_or_default(),
                opened_at: secs(r.opened_at),
                mttd_bound_secs: r.mttd_bound_secs,
                notified_at: r.notified_at.map(secs),
                time_to_notify_secs: r.time_to_notify_secs,
                remediated_at: r.remediated_at.map(secs),
                remedy: r.remedy.map(|m| m.as_str()).unwrap_or_default().to_string(),
                time_to_remediate_secs: r.time_to_remediate_secs,
                ver,
            })
            .collect();
        self.insert("episode_reports", rows.iter()).await
    }

    /// Upsert the deliveries of `notifications` (one row per channel that tried
    /// one) at version `ver`.
    pub async fn write_deliveries(
        &self,
        notifications: &[NotificationRecord],
        ver: u64,
    ) -> Result<(), ClickHouseError> {
        let rows: Vec<DeliveryRow> = notifications
            .iter()
            .flat_map(|r| {
                let n = &r.notification;
                r.deliveries.values().map(move |d| DeliveryRow {
                    notification_id: n.id.clone(),
                    channel: d.channel.clone(),
                    kind: n.kind.as_str().to_string(),
                    ip: n.ip.to_string(),
                    severity: n.severity.as_str().to_string(),
                    owner: n.asset.owner.clone().unwrap_or_default(),
                    alerts: u32::try_from(n.alerts.len()).unwrap_or(u32::MAX),
                    decided_at: secs(n.at),
                    attempts: d.attempts,
                    outcome: d.outcome.as_str().to_string(),
                    last_at: secs(d.last_at),
                    last_status: d.last_status,
                    ver,
                })
            })
            .collect();
        self.insert("deliveries", rows.iter()).await
    }

    async fn insert<'a, T>(
        &self,
        table: &'static str,
        rows: impl Iterator<Item = &'a T>,
    ) -> Result<(), ClickHouseError>
    where
        T: Row + Serialize + 'a,
        T: for<'b> Row<Value<'b> = T>,
    {
        let mut insert = self
            .client
            .insert::<T>(table)
            .await
            .map_err(self.err(format!("insert into {table}")))?;
        for row in rows {
            insert
                .write(row)
                .await
                .map_err(self.err(format!("insert into {table}")))?;
        }
        insert
            .end()
            .await
            .map_err(self.err(format!("insert into {table}")))
    }
}
