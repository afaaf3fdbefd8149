//! Reading: the read model's queries (filters and key pages in SQL, `FINAL` so that
//! each row is seen once at its last version), jobs, nodes and retention.

use clickhouse::Row;
use portwatch_events::Timestamp;
use portwatch_projections::{sort_alerts, sort_episodes, Alert, Episode, HostRow, PortRow, Snapshot};
use serde::Deserialize;

use super::rows::{JobRow, JsonRow, ProbeNodeRow, TaskJobCounts, TaskRunRows};
use super::{ClickHouseError, ClickHouseStore};
use crate::query::{
    alert_key, episode_key, host_key, port_key, AlertQuery, EpisodeQuery, Filter, HostQuery, Page,
    PageRequest, PortQuery,
};

impl ClickHouseStore {
    /// One page of `table`: rows matching the filter after the cursor, in key order,
    /// decoded from the JSON column `body`.
    ///
    /// `optimize_move_to_prewhere = 0`: an old server moves WHERE conditions into
    /// PREWHERE, which runs *before* FINAL picks each row's last version, so a port
    /// closed since would still match `state = 'open'` by an older version.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        (table, body, filter): (&'static str, &'static str, Filter),
        page: &PageRequest,
        key: impl Fn(&T) -> String,
    ) -> Result<Page<T>, ClickHouseError> {
        let (tail, args) = filter.page_sql(page);
        let sql =
            format!("SELECT {body} AS row FROM {table} FINAL{tail} SETTINGS optimize_move_to_prewhere = 0");
        let mut query = self.client.query(&sql);
        for arg in &args {
            query = query.bind(arg.as_str());
        }
        let rows = query
            .fetch_all::<JsonRow>()
            .await
            .map_err(self.err(format!("reading {table}")))?;
        let items = rows
            .iter()
            .map(|r| {
                serde_json::from_str(&r.row).map_err(|e| ClickHouseError::Corrupt {
                    table,
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<T>, _>>()?;
        Ok(page.page(items, key))
    }

    /// Port rows matching `query`, in (ip, proto, port) order, one page.
    pub async fn ports(
        &self,
        query: &PortQuery,
        page: &PageRequest,
    ) -> Result<Page<PortRow>, ClickHouseError> {
        self.page(("port_state", "row", query.filter()), page, port_key)
            .await
    }

    /// Episodes matching `query`, in (ip, proto, port, opened_at) order, one page.
    pub async fn episodes(
        &self,
        query: &EpisodeQuery,
        page: &PageRequest,
    ) -> Result<Page<Episode>, ClickHouseError> {
        let open_sql = |open: bool| {
            if open {
                "closed_at IS NULL"
            } else {
                "closed_at IS NOT NULL"
            }
        };
        self.page(("episodes", "row", query.filter(open_sql)), page, episode_key)
            .await
    }

    /// Hosts matching `query`, by address, one page.
    pub async fn hosts(
        &self,
        query: &HostQuery,
        page: &PageRequest,
    ) -> Result<Page<HostRow>, ClickHouseError> {
        self.page(("hosts", "row", query.filter()), page, host_key).await
    }

    /// Alerts matching `query`, oldest first, one page.
    pub async fn alerts(
        &self,
        query: &AlertQuery,
        page: &PageRequest,
    ) -> Result<Page<Alert>, ClickHouseError> {
        self.page(("alerts", "body", query.filter()), page, alert_key)
            .await
    }

    /// One host's raw observations, newest first (by time, then id): at most
    /// `max`, all before `before` (a `ts_ms` and an event id) when given. Each is
    /// its time in milliseconds, its id and its JSON body as recorded.
    pub async fn observations(
        &self,
        ip: &str,
        before: Option<(i64, &str)>,
        max: u64,
    ) -> Result<Vec<(i64, String, String)>, ClickHouseError> {
        #[derive(Debug, Row, Deserialize)]
        struct Stored {
            ts_ms: i64,
            id: String,
            body: String,
        }
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        let rows = self
            .client
            .query(
                "SELECT ?fields FROM observations FINAL WHERE ip = ? AND (ts_ms < ? OR (ts_ms = ? AND id < ?)) \
                 ORDER BY ts_ms DESC, id DESC LIMIT ?",
            )
            .bind(ip)
            .bind(at)
            .bind(at)
            .bind(id)
            .bind(max)
            .fetch_all::<Stored>()
            .await
            .map_err(self.err("reading observations"))?;
        Ok(rows.into_iter().map(|r| (r.ts_ms, r.id, r.body)).collect())
    }

    /// The archive in the order it was logged: at most `max` observations after
    /// `after` (a log partition and offset), by partition then offset. Each is its
    /// partition, offset and JSON body as recorded. A host's events share one
    /// partition, so this is the order its fold saw them in.
    pub async fn archived(
        &self,
        after: Option<(u32, u64)>,
        max: u64,
    ) -> Result<Vec<(u32, u64, String)>, ClickHouseError> {
        #[derive(Debug, Row, Deserialize)]
        struct Stored {
            kpartition: u32,
            koffset: u64,
            body: String,
        }
        // Before the first row: partition 0, "offset -1" (a greater-or-equal there).
        let (partition, offset, first) = match after {
            Some((p, o)) => (p, o, 0u8),
            None => (0, 0, 1),
        };
        let rows = self
            .client
            .query(
                "SELECT ?fields FROM observations FINAL \
                 WHERE kpartition > ? OR (kpartition = ? AND (koffset > ? OR (koffset = ? AND ? = 1))) \
                 ORDER BY kpartition, koffset LIMIT ?",
            )
            .bind(partition)
            .bind(partition)
            .bind(offset)
            .bind(offset)
            .bind(first)
            .bind(max)
            .fetch_all::<Stored>()
            .await
            .map_err(self.err("reading the archived observations"))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.kpartition, r.koffset, r.body))
            .collect())
    }

    /// Probe nodes, by name.
    pub async fn nodes(&self) -> Result<Vec<ProbeNodeRow>, ClickHouseError> {
        self.client
            .query("SELECT ?fields FROM probe_nodes FINAL ORDER BY node")
            .fetch_all::<ProbeNodeRow>()
            .await
            .map_err(self.err("reading probe_nodes"))
    }

    /// Jobs, newest first (at most `limit`).
    pub async fn jobs(&self, limit: u64) -> Result<Vec<JobRow>, ClickHouseError> {
        self.client
            .query("SELECT ?fields FROM jobs FINAL ORDER BY issued_at DESC, id LIMIT ?")
            .bind(limit)
            .fetch_all::<JobRow>()
            .await
            .map_err(self.err("reading jobs"))
    }

    /// One job's row, if there is one.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, ClickHouseError> {
        self.client
            .query("SELECT ?fields FROM jobs FINAL WHERE id = ? LIMIT 1")
            .bind(id)
            .fetch_optional::<JobRow>()
            .await
            .map_err(self.err("reading jobs"))
    }

    /// The passes recorded as running (a chunk attempt names its pass; passes do not).
    pub async fn running_passes(&self) -> Result<Vec<JobRow>, ClickHouseError> {
        self.client
            .query(
                "SELECT ?fields FROM jobs FINAL WHERE state = 'running' \
                 AND visitParamExtractString(detail, 'pass') = '' \
                 SETTINGS optimize_move_to_prewhere = 0",
            )
            .fetch_all::<JobRow>()
            .await
            .map_err(self.err("reading jobs"))
    }

    /// When a job of `task` was last issued (seconds since the epoch), if ever.
    pub async fn last_issued(&self, task: &str) -> Result<Option<u32>, ClickHouseError> {
        let at = self
            .client
            .query("SELECT toUInt32(max(issued_at)) FROM jobs WHERE task = ?")
            .bind(task)
            .fetch_one::<u32>()
            .await
            .map_err(self.err("reading jobs"))?;
        Ok(Some(at).filter(|at| *at > 0))
    }

    /// Per task and zone: passes issued since `since` (seconds), how many of them
    /// failed and the slots they overran; the newest job of each task and zone; the newest done and the newest
    /// failed one.
    pub async fn task_runs(&self, since: u32) -> Result<TaskRunRows, ClickHouseError> {
        let counts = self
            .client
            .query(
                "SELECT task, zone, count() AS runs, countIf(state = 'failed') AS failed, \
                        sum(visitParamExtractUInt(detail, 'overruns')) AS overruns \
                 FROM jobs FINAL WHERE issued_at >= toDateTime(?) AND visitParamExtractString(detail, 'pass') = '' \
                 GROUP BY task, zone SETTINGS optimize_move_to_prewhere = 0",
            )
            .bind(since)
            .fetch_all::<TaskJobCounts>()
            .await
            .map_err(self.err("reading jobs"))?;
        // The newest job of each task and zone, of those in `state` when given.
        let newest = |state: Option<&'static str>| async move {
            // Passes only: a chunk attempt names its pass.
            let filter = state.map_or(String::new(), |s| format!(" AND state = '{s}'"));
            let filter = format!(" WHERE visitParamExtractString(detail, 'pass') = ''{filter}");
            self.client
                .query(&format!(
                    "SELECT ?fields FROM jobs FINAL{filter} ORDER BY task, zone, issued_at DESC, id DESC \
                     LIMIT 1 BY task, zone SETTINGS optimize_move_to_prewhere = 0"
                ))
                .fetch_all::<JobRow>()
                .await
                .map_err(self.err("reading jobs"))
        };
        Ok(TaskRunRows {
            counts,
            last: newest(None).await?,
            last_done: newest(Some("done")).await?,
            last_failed: newest(Some("failed")).await?,
        })
    }

    /// The whole projected state.
    pub async fn snapshot(&self) -> Result<Snapshot, ClickHouseError> {
        let all = PageRequest::all();
        let mut episodes = self.episodes(&EpisodeQuery::default(), &all).await?.items;
        sort_episodes(&mut episodes);
        let mut alerts = self.alerts(&AlertQuery::default(), &all).await?.items;
        sort_alerts(&mut alerts);
        Ok(Snapshot {
            ports: self.ports(&PortQuery::default(), &all).await?.items,
            episodes,
            hosts: self.hosts(&HostQuery::default(), &all).await?.items,
            alerts,
        })
    }

    /// Run a query and return its rows as JSON lines (for tests and operators).
    pub async fn query_json(&self, sql: &str) -> Result<Vec<serde_json::Value>, ClickHouseError> {
        let mut cursor = self
            .client
            .query(sql)
            .fetch_bytes("JSONEachRow")
            .map_err(self.err("query"))?;
        let bytes = cursor.collect().await.map_err(self.err("query"))?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Drop monthly partitions of `observations` older than `keep_months` months
    /// before `now` (retention by partition drop). Returns the partitions dropped.
    pub async fn drop_old_observations(
        &self,
        keep_months: u32,
        now: Timestamp,
    ) -> Result<Vec<String>, ClickHouseError> {
        use chrono::Datelike;
        let months_now = now.year() * 12 + now.month0() as i32;
        let cutoff = months_now - keep_months as i32;
        let cutoff_yyyymm = (cutoff / 12) * 100 + (cutoff % 12) + 1;
        #[derive(Row, Deserialize)]
        struct Part {
            partition: String,
        }
        let parts = self
            .client
            .query("SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = 'observations' AND active")
            .bind(&self.settings.database)
            .fetch_all::<Part>()
            .await
            .map_err(self.err("listing partitions"))?;
        let mut dropped = Vec::new();
        for part in parts {
            let Ok(yyyymm) = part.partition.trim_matches('\'').parse::<i32>() else {
                continue;
            };
            if yyyymm < cutoff_yyyymm {
                self.client
                    .query(&format!("ALTER TABLE observations DROP PARTITION {yyyymm}"))
                    .execute()
                    .await
                    .map_err(self.err(format!("dropping partition {yyyymm}")))?;
                dropped.push(yyyymm.to_string());
            }
        }
        Ok(dropped)
    }

    /// Delete the jobs issued more than `keep_months` months before `now` (the jobs
    /// table is keyed by id, not partitioned by time, so this is a mutation, asked
    /// for only when there is something to delete). How many there were.
    pub async fn delete_old_jobs(&self, keep_months: u32, now: Timestamp) -> Result<u64, ClickHouseError> {
        let cutoff = now
            .checked_sub_months(chrono::Months::new(keep_months))
            .unwrap_or(now)
            .timestamp()
            .clamp(0, i64::from(u32::MAX)) as u32;
        let old = self
            .client
            .query("SELECT count() FROM jobs WHERE issued_at < toDateTime(?)")
            .bind(cutoff)
            .fetch_one::<u64>()
            .await
            .map_err(self.err("counting old jobs"))?;
        if old > 0 {
            self.client
                .query("ALTER TABLE jobs DELETE WHERE issued_at < toDateTime(?)")
                .bind(cutoff)
                .execute()
                .await
                .map_err(self.err("deleting old jobs"))?;
        }
        Ok(old)
    }
}
