//! The embedded store: projected state in one SQLite file, written by the projector
//! and read by the API, the scheduler and the shell queries.
//!
//! A projection owns its progress: [`EmbeddedStore::commit`] writes the changed rows
//! *and* the log offset that produced them in one transaction, so after a crash the
//! projector resumes exactly where its last committed state ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use portwatch_projections::{
    sort_alerts, sort_episodes, Alert, ChangeSet, Episode, FoldConfig, HostRow, PortRow, Snapshot, State,
};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::query::{
    alert_key, episode_key, host_key, ip_key, port_key, AlertQuery, EpisodeQuery, Filter, HostQuery, Page,
    PageRequest, PortQuery,
};

/// Schema version of the embedded store (`PRAGMA user_version`).
pub const STORE_SCHEMA_VERSION: i64 = 4;

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE offsets (
    projection  TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (projection, partition)
);
CREATE TABLE ports (
    ip        TEXT NOT NULL,
    proto     TEXT NOT NULL,
    port      INTEGER NOT NULL,
    state     TEXT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (ip, proto, port)
);
CREATE INDEX ports_state ON ports (state);
CREATE TABLE episodes (
    id        TEXT PRIMARY KEY,
    ip        TEXT NOT NULL,
    proto     TEXT NOT NULL,
    port      INTEGER NOT NULL,
    open      INTEGER NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX episodes_ip ON episodes (ip);
CREATE INDEX episodes_open ON episodes (open);
CREATE TABLE hosts (
    ip        TEXT PRIMARY KEY,
    data      TEXT NOT NULL
);
CREATE TABLE meta (
    key       TEXT PRIMARY KEY,
    value     TEXT NOT NULL
);
",
    ),
    (
        2,
        // Alerts, risk classes and sort keys for paging in SQL. Rows written by
        // version 1 have neither, so the state is dropped with its offsets: the
        // projector folds the log again on start (the log is the source of truth).
        "
DROP TABLE ports;
DROP TABLE episodes;
DROP TABLE hosts;
DELETE FROM offsets;
DELETE FROM meta;
CREATE TABLE ports (
    ip        TEXT NOT NULL,
    proto     TEXT NOT NULL,
    port      INTEGER NOT NULL,
    state     TEXT NOT NULL,
    risk      TEXT NOT NULL,
    ipkey     TEXT NOT NULL,
    skey      TEXT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (ip, proto, port)
);
CREATE INDEX ports_skey ON ports (skey);
CREATE TABLE episodes (
    id        TEXT PRIMARY KEY,
    open      INTEGER NOT NULL,
    ipkey     TEXT NOT NULL,
    skey      TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX episodes_skey ON episodes (skey);
CREATE INDEX episodes_open ON episodes (open);
CREATE TABLE hosts (
    ip        TEXT PRIMARY KEY,
    ipkey     TEXT NOT NULL,
    skey      TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX hosts_skey ON hosts (skey);
CREATE TABLE alerts (
    id        TEXT PRIMARY KEY,
    risk      TEXT NOT NULL,
    ipkey     TEXT NOT NULL,
    skey      TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX alerts_skey ON alerts (skey);
",
    ),
    (
        3,
        // Jobs of this process's scheduler, so that they outlive a restart (the
        // scale-out control plane keeps its jobs in ClickHouse).
        "
CREATE TABLE jobs (
    id         TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX jobs_started ON jobs (started_at);
",
    ),
    (
        4,
        // Each task's runs, failures and last job (the console's task health)
        // without reading every job.
        "
CREATE INDEX jobs_task ON jobs (json_extract(data, '$.task'), started_at);
CREATE INDEX jobs_task_state ON jobs (json_extract(data, '$.task'), json_extract(data, '$.state'), started_at);
",
    ),
];

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("state store error at {path}: {source}")]
    Sqlite {
        /// Database file.
        path: String,
        /// Underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not decode (a bug, or a file written by a newer build).
    #[error("state store at {path} holds an unreadable {table} row: {reason}")]
    Corrupt {
        /// Database file.
        path: String,
        /// Table of the row.
        table: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// The file was written by a newer portwatch.
    #[error("state store at {path} has schema version {found}, newer than this build's {known}; upgrade portwatch")]
    TooNew {
        /// Database file.
        path: String,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// The store directory could not be created.
    #[error("cannot create state store directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The rows one commit writes, borrowed from wherever they are (a projector's batch,
/// a change set), and the offsets they reach.
#[derive(Debug)]
pub struct Rows<'a> {
    /// Changed port rows.
    pub ports: Vec<&'a PortRow>,
    /// Changed episodes.
    pub episodes: Vec<&'a Episode>,
    /// Changed hosts.
    pub hosts: Vec<&'a HostRow>,
    /// New alerts.
    pub alerts: Vec<&'a portwatch_projections::Alert>,
    /// Per partition, the next offset to fold.
    pub next: &'a BTreeMap<u32, u64>,
}

impl<'a> Rows<'a> {
    /// The rows of `changes`, reaching `next`.
    pub fn of_changes(changes: &'a ChangeSet, next: &'a BTreeMap<u32, u64>) -> Self {
        Self {
            ports: changes.ports.values().collect(),
            episodes: changes.episodes.values().collect(),
            hosts: changes.hosts.values().collect(),
            alerts: changes.alerts.values().collect(),
            next,
        }
    }

    /// The rows of a projector's batch (their versions are not needed here: the
    /// offsets are committed with them).
    pub fn of_batch(batch: &'a crate::Batch) -> Self {
        Self {
            ports: batch.ports.values().map(|v| &v.row).collect(),
            episodes: batch.episodes.values().map(|v| &v.row).collect(),
            hosts: batch.hosts.values().map(|v| &v.row).collect(),
            alerts: batch.alerts.values().map(|v| &v.row).collect(),
            next: &batch.next,
        }
    }
}

/// A job as the embedded store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    /// Job id.
    pub id: String,
    /// When it started (orders the list).
    pub started_at: portwatch_events::Timestamp,
    /// The job as JSON.
    pub data: String,
}

/// One task's jobs as the store has them: how many started since a time, how many
/// of those failed, its last job, its last done one and its last failed one (JSON,
/// as put).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTaskRuns {
    /// The task.
    pub task: String,
    /// Passes started since the time asked (chunk attempts are not counted).
    pub runs: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Cadence slots its passes in the period overran.
    pub overruns: u64,
    /// Its newest job.
    pub last: Option<String>,
    /// Its newest job that finished well, whenever it was.
    pub last_done: Option<String>,
    /// Its newest failed job, whenever it was.
    pub last_failed: Option<String>,
}

/// Projected state in one SQLite file.
#[derive(Debug)]
pub struct EmbeddedStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl EmbeddedStore {
    /// Open (or create and migrate) the store at `path` for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(&path).map_err(|e| sqlite(&path, e))?;
        // NORMAL is enough: the store can always be rebuilt from the log, and WAL keeps
        // every committed transaction across a process crash.
        conn.execute_batch("PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(|e| sqlite(&path, e))?;
        migrate(&path, &mut conn)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Open an existing store read-only (for the shell queries and the API).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| sqlite(&path, e))?;
        conn.execute_batch("PRAGMA busy_timeout=10000;")
            .map_err(|e| sqlite(&path, e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sqlite(&path, e))?;
        if version > STORE_SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                known: STORE_SCHEMA_VERSION,
            });
        }
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // See ingest: a poisoned lock leaves SQLite itself consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite(&self.path, e)
    }

    /// The offset `projection` should read `partition` from next (0 if never run).
    pub fn next_offset(&self, projection: &str, partition: u32) -> Result<u64, StoreError> {
        let conn = self.conn();
        let value: Option<i64> = conn
            .query_row(
                "SELECT next_offset FROM offsets WHERE projection = ?1 AND partition = ?2",
                params![projection, partition],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(value.map_or(0, |v| v as u64))
    }

    /// The fold config the stored state was built with, if recorded.
    pub fn fold_config(&self) -> Result<Option<u32>, StoreError> {
        let conn = self.conn();
        let value: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'close_after_misses'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    /// Rebuild the fold state from the stored rows.
    pub fn load_state(&self, cfg: FoldConfig) -> Result<State, StoreError> {
        let all = PageRequest::all();
        let ports = self.ports(&PortQuery::default(), &all)?.items;
        let open = EpisodeQuery {
            open: Some(true),
            ..EpisodeQuery::default()
        };
        let episodes = self.episodes(&open, &all)?.items;
        let hosts = self.hosts(&HostQuery::default(), &all)?.items;
        Ok(State::from_rows(cfg, ports, episodes, hosts))
    }

    /// Write the changed rows and the projection's new offset in one transaction.
    pub fn commit(
        &self,
        projection: &str,
        partition: u32,
        next_offset: u64,
        cfg: &FoldConfig,
        changes: &ChangeSet,
    ) -> Result<(), StoreError> {
        let next = BTreeMap::from([(partition, next_offset)]);
        self.commit_rows(projection, cfg, &Rows::of_changes(changes, &next))
    }

    /// Write the changed rows and the projection's new offsets (per partition) in
    /// one transaction.
    pub fn commit_rows(&self, projection: &str, cfg: &FoldConfig, rows: &Rows<'_>) -> Result<(), StoreError> {
        let next_offsets = rows.next;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut put_port = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO ports (ip, proto, port, state, risk, ipkey, skey, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.err(e))?;
            for row in &rows.ports {
                put_port
                    .execute(params![
                        row.ip.to_string(),
                        row.proto.as_str(),
                        row.port,
                        row.state.as_str(),
                        row.risk.as_str(),
                        ip_key(row.ip),
                        port_key(row),
                        to_json(row),
                    ])
                    .map_err(|e| self.err(e))?;
            }
            let mut put_episode = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO episodes (id, open, ipkey, skey, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.err(e))?;
            for ep in &rows.episodes {
                put_episode
                    .execute(params![
                        ep.id,
                        ep.closed_at.is_none(),
                        ip_key(ep.ip),
                        episode_key(ep),
                        to_json(ep),
                    ])
                    .map_err(|e| self.err(e))?;
            }
            let mut put_host = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO hosts (ip, ipkey, skey, data) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| self.err(e))?;
            for host in &rows.hosts {
                put_host
                    .execute(params![
                        host.ip.to_string(),
                        ip_key(host.ip),
                        host_key(host),
                        to_json(host)
                    ])
                    .map_err(|e| self.err(e))?;
            }
            // An alert is raised once; its id never changes meaning.
            let mut put_alert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO alerts (id, risk, ipkey, skey, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.err(e))?;
            for alert in &rows.alerts {
                put_alert
                    .execute(params![
                        alert.id,
                        alert.risk.as_str(),
                        ip_key(alert.ip),
                        alert_key(alert),
                        to_json(alert)
                    ])
                    .map_err(|e| self.err(e))?;
            }
            for (partition, next_offset) in next_offsets {
                tx.execute(
                    "INSERT OR REPLACE INTO offsets (projection, partition, next_offset) VALUES (?1, ?2, ?3)",
                    params![projection, partition, *next_offset as i64],
                )
                .map_err(|e| self.err(e))?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('close_after_misses', ?1)",
                params![cfg.close_after_misses.to_string()],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Port rows matching `query`, in (ip, proto, port) order, one page.
    pub fn ports(&self, query: &PortQuery, page: &PageRequest) -> Result<Page<PortRow>, StoreError> {
        self.page(("ports", query.filter()), page, port_key)
    }

    /// Episodes matching `query`, in (ip, proto, port, opened_at) order, one page.
    pub fn episodes(&self, query: &EpisodeQuery, page: &PageRequest) -> Result<Page<Episode>, StoreError> {
        let open_sql = |open: bool| if open { "open = 1" } else { "open = 0" };
        self.page(("episodes", query.filter(open_sql)), page, episode_key)
    }

    /// Hosts matching `query`, by address, one page.
    pub fn hosts(&self, query: &HostQuery, page: &PageRequest) -> Result<Page<HostRow>, StoreError> {
        self.page(("hosts", query.filter()), page, host_key)
    }

    /// Alerts matching `query`, oldest first, one page.
    pub fn alerts(&self, query: &AlertQuery, page: &PageRequest) -> Result<Page<Alert>, StoreError> {
        self.page(("alerts", query.filter()), page, alert_key)
    }

    /// One page of `table`: rows matching the filter after the cursor, in key order.
    fn page<T: DeserializeOwned>(
        &self,
        (table, filter): (&'static str, Filter),
        page: &PageRequest,
        key: impl Fn(&T) -> String,
    ) -> Result<Page<T>, StoreError> {
        let (tail, args) = filter.page_sql(page);
        let sql = format!("SELECT data FROM {table}{tail}");
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows: Vec<T> = self.decode_rows(&mut stmt, params_from_iter(args.iter()), table)?;
        Ok(page.page(rows, key))
    }

    /// Record jobs (a job's id is its key: a later record of it replaces the
    /// earlier). `data` is the job as JSON; `started_at` orders them.
    pub fn put_jobs(&self, jobs: &[StoredJob]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO jobs (id, started_at, data) VALUES (?1, ?2, ?3)")
                .map_err(|e| self.err(e))?;
            for job in jobs {
                put.execute(params![job.id, job.started_at.to_rfc3339(), job.data])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Record every job still recorded running as failed with `reason`: called on
    /// start, before this process runs any, the jobs of a process that stopped.
    /// How many there were.
    pub fn interrupt_running_jobs(&self, reason: &str) -> Result<usize, StoreError> {
        self.conn()
            .execute(
                "UPDATE jobs SET data = json_set(data, '$.state', 'failed', '$.error', ?1) \
                 WHERE json_extract(data, '$.state') = 'running'",
                params![reason],
            )
            .map_err(|e| self.err(e))
    }

    /// The most recent jobs' JSON, newest first.
    pub fn recent_jobs(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT data FROM jobs ORDER BY started_at DESC, id DESC LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    /// For each of `tasks`: its jobs since `since`, its last job and its last failed
    /// one (by the task indexes: the cost does not grow with the jobs kept).
    pub fn task_runs(
        &self,
        tasks: &[&str],
        since: portwatch_events::Timestamp,
    ) -> Result<Vec<StoredTaskRuns>, StoreError> {
        let conn = self.conn();
        let since = since.to_rfc3339();
        let mut out = Vec::with_capacity(tasks.len());
        for &task in tasks {
            let (runs, failed, overruns) = conn
                .prepare_cached(
                    "SELECT COUNT(*), \
                            COALESCE(SUM(json_extract(data, '$.state') = 'failed'), 0), \
                            COALESCE(SUM(json_extract(data, '$.progress.overruns')), 0) \
                     FROM jobs WHERE json_extract(data, '$.task') = ?1 AND started_at >= ?2 \
                     AND json_extract(data, '$.chunk') IS NULL",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![task, since], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    })
                })
                .map_err(|e| self.err(e))?;
            // The newest job of the task, of it in a state when given.
            let newest = |state: Option<&str>| {
                let sql = match state {
                    None => {
                        "SELECT data FROM jobs WHERE json_extract(data, '$.task') = ?1 \
                         AND json_extract(data, '$.chunk') IS NULL \
                         ORDER BY started_at DESC, id DESC LIMIT 1"
                    }
                    Some(_) => {
                        "SELECT data FROM jobs WHERE json_extract(data, '$.task') = ?1 \
                         AND json_extract(data, '$.chunk') IS NULL \
                         AND json_extract(data, '$.state') = ?2 ORDER BY started_at DESC, id DESC LIMIT 1"
                    }
                };
                conn.prepare_cached(sql)
                    .and_then(|mut stmt| match state {
                        None => stmt.query_row(params![task], |r| r.get::<_, String>(0)),
                        Some(state) => stmt.query_row(params![task, state], |r| r.get::<_, String>(0)),
                    })
                    .optional()
                    .map_err(|e| self.err(e))
            };
            let (last, last_done, last_failed) =
                (newest(None)?, newest(Some("done"))?, newest(Some("failed"))?);
            out.push(StoredTaskRuns {
                task: task.to_string(),
                runs: runs as u64,
                failed: failed as u64,
                overruns: overruns.max(0) as u64,
                last,
                last_done,
                last_failed,
            });
        }
        Ok(out)
    }

    /// Everything, in canonical order (for comparisons with a rebuild).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let all = PageRequest::all();
        let mut episodes = self.episodes(&EpisodeQuery::default(), &all)?.items;
        sort_episodes(&mut episodes);
        let mut alerts = self.alerts(&AlertQuery::default(), &all)?.items;
        sort_alerts(&mut alerts);
        Ok(Snapshot {
            ports: self.ports(&PortQuery::default(), &all)?.items,
            episodes,
            hosts: self.hosts(&HostQuery::default(), &all)?.items,
            alerts,
        })
    }

    fn decode_rows<T: DeserializeOwned>(
        &self,
        stmt: &mut rusqlite::CachedStatement<'_>,
        params: impl rusqlite::Params,
        table: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let texts = stmt
            .query_map(params, |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for text in texts {
            let text = text.map_err(|e| self.err(e))?;
            out.push(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                path: self.path.display().to_string(),
                table,
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Rows are plain data; serialising them into a String cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sqlite(path, e))?;
    if version > STORE_SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: version,
            known: STORE_SCHEMA_VERSION,
        });
    }
    for &(target, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
        let tx = conn.transaction().map_err(|e| sqlite(path, e))?;
        tx.execute_batch(sql).map_err(|e| sqlite(path, e))?;
        tx.pragma_update(None, "user_version", target)
            .map_err(|e| sqlite(path, e))?;
        tx.commit().map_err(|e| sqlite(path, e))?;
        tracing::info!(path = %path.display(), version = target, "state store migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use portwatch_events::{
        Event, HostScan, JobId, Observation, Origin, OutcomeCounts, PortSet, Proto, Task,
    };
    use portwatch_projections::PortState;

    fn scan(ip: &str, secs: i64, open: Vec<u16>) -> Event {
        let ts = Utc.timestamp_opt(1_800_000_000 + secs, 0).single().expect("ts");
        let origin = Origin {
            node: "t".into(),
            job: JobId::new(),
            task: Task::FullPorts,
        };
        Event::new(
            &origin,
            ts,
            Observation::HostScan(HostScan {
                ip: ip.parse().expect("ip"),
                proto: Proto::Tcp,
                started_at: ts,
                covered: PortSet::parse("1-100").expect("ports"),
                counts: OutcomeCounts {
                    open: open.len() as u32,
                    closed: 100 - open.len() as u32,
                    ..Default::default()
                },
                open,
                wildcard: false,
                unverified: 0,
            }),
        )
    }

    #[test]
    fn committed_state_and_offset_survive_reopen_and_match_the_fold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let cfg = FoldConfig::default();
        let events = vec![
            scan("127.0.0.2", 0, vec![22, 80]),
            scan("127.0.0.3", 5, vec![]),
            scan("127.0.0.2", 10, vec![80]),
            scan("127.0.0.2", 20, vec![80]),
        ];
        {
            let store = EmbeddedStore::open(&path).expect("open");
            let mut state = store.load_state(cfg.clone()).expect("load");
            // Two batches, as a projector would commit them.
            for (batch, next) in [(&events[..2], 2u64), (&events[2..], 4u64)] {
                let mut changes = ChangeSet::default();
                for ev in batch {
                    changes.extend(state.apply(ev));
                }
                store.commit("state", 0, next, &cfg, &changes).expect("commit");
            }
        }
        let store = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(store.next_offset("state", 0).expect("offset"), 4);
        assert_eq!(store.next_offset("other", 0).expect("offset"), 0);
        let expected = portwatch_projections::fold_all(cfg.clone(), &events);
        assert_eq!(store.snapshot().expect("snapshot"), expected);
        let open = store
            .ports(
                &PortQuery {
                    state: Some(PortState::Open),
                    ..PortQuery::default()
                },
                &PageRequest::all(),
            )
            .expect("ports");
        assert_eq!(open.items.iter().map(|r| r.port).collect::<Vec<_>>(), vec![80]);
        assert_eq!(store.fold_config().expect("cfg"), Some(2));
        // The reloaded fold state continues exactly like the uninterrupted one.
        let mut state = store.load_state(cfg.clone()).expect("load");
        let next = scan("127.0.0.2", 30, vec![]);
        let mut all = events.clone();
        all.push(next.clone());
        let mut changes = ChangeSet::default();
        changes.extend(state.apply(&next));
        store.commit("state", 0, 5, &cfg, &changes).expect("commit");
        assert_eq!(
            store.snapshot().expect("snapshot"),
            portwatch_projections::fold_all(cfg, &all)
        );
    }

    #[test]
    fn pages_and_filters_happen_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path().join("state.db")).expect("open");
        let cfg = FoldConfig::default();
        let mut state = store.load_state(cfg.clone()).expect("load");
        let mut changes = ChangeSet::default();
        for ev in [
            scan("10.0.0.10", 0, vec![22, 80]),
            scan("10.0.0.2", 0, vec![6379]),
            scan("::1", 0, vec![80]),
        ] {
            changes.extend(state.apply(&ev));
        }
        store.commit("state", 0, 3, &cfg, &changes).expect("commit");
        // Address order (10.0.0.2 before 10.0.0.10, IPv4 before IPv6), two at a time.
        let mut seen = Vec::new();
        let mut page = PageRequest::first(2);
        loop {
            let got = store.ports(&PortQuery::default(), &page).expect("page");
            assert!(got.items.len() <= 2);
            seen.extend(got.items.iter().map(|r| format!("{}:{}", r.ip, r.port)));
            match got.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["10.0.0.2:6379", "10.0.0.10:22", "10.0.0.10:80", "::1:80"]);
        let high = PortQuery {
            risk: Some(portwatch_events::RiskClass::HighRiskPort),
            ..PortQuery::default()
        };
        let rows = store.ports(&high, &PageRequest::all()).expect("risk");
        assert_eq!(rows.items.iter().map(|r| r.port).collect::<Vec<_>>(), [6379]);
        let within = PortQuery {
            within: Some(vec![crate::IpRange {
                lo: "10.0.0.8".parse().expect("ip"),
                hi: "10.0.0.15".parse().expect("ip"),
            }]),
            ..PortQuery::default()
        };
        let rows = store.ports(&within, &PageRequest::all()).expect("within");
        assert_eq!(rows.items.iter().map(|r| r.port).collect::<Vec<_>>(), [22, 80]);
        let alerts = store
            .alerts(&AlertQuery::default(), &PageRequest::all())
            .expect("alerts");
        assert_eq!(alerts.items.len(), 4, "one exposure_opened per port");
    }

    #[test]
    fn a_version_1_store_is_emptied_so_the_log_is_folded_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0].1).expect("v1");
            conn.execute("INSERT INTO offsets VALUES ('state', 0, 42)", [])
                .expect("offset");
            conn.pragma_update(None, "user_version", 1).expect("pragma");
        }
        let store = EmbeddedStore::open(&path).expect("migrated");
        assert_eq!(store.next_offset("state", 0).expect("offset"), 0);
        assert_eq!(store.snapshot().expect("snapshot"), Snapshot::default());
    }

    /// A fixed time, `s` seconds on.
    fn at(s: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc
            .timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("ts")
    }

    #[test]
    fn jobs_are_kept_newest_first_and_replaced_by_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path().join("state.db")).expect("open");
        let job = |id: &str, s: i64, state: &str| StoredJob {
            id: id.into(),
            started_at: at(s),
            data: format!("{{\"id\":\"{id}\",\"state\":\"{state}\"}}"),
        };
        store
            .put_jobs(&[job("a", 0, "running"), job("b", 10, "running")])
            .expect("put");
        store.put_jobs(&[job("a", 0, "done")]).expect("update");
        let jobs = store.recent_jobs(10).expect("jobs");
        assert_eq!(jobs, [job("b", 10, "running").data, job("a", 0, "done").data]);
        assert_eq!(store.recent_jobs(1).expect("jobs").len(), 1);
    }

    #[test]
    fn each_tasks_runs_failures_and_last_jobs_come_from_its_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path().join("state.db")).expect("open");
        let job = |id: &str, task: &str, s: i64, state: &str| StoredJob {
            id: id.into(),
            started_at: at(s),
            data: format!("{{\"id\":\"{id}\",\"task\":\"{task}\",\"state\":\"{state}\"}}"),
        };
        store
            .put_jobs(&[
                job("a", "full_ports", 0, "failed"),
                job("b", "full_ports", 100, "done"),
                job("c", "full_ports", 200, "failed"),
                job("d", "full_ports", 300, "running"),
                job("e", "liveness", 50, "done"),
            ])
            .expect("put");
        // A chunk attempt is on the job list, not a run of its task; a pass says
        // how many slots it overran.
        let attempt = StoredJob {
            id: "f".into(),
            started_at: at(400),
            data: "{\"id\":\"f\",\"task\":\"full_ports\",\"state\":\"failed\",\"chunk\":{\"index\":0}}"
                .into(),
        };
        let overran = StoredJob {
            id: "d".into(),
            started_at: at(300),
            data:
                "{\"id\":\"d\",\"task\":\"full_ports\",\"state\":\"running\",\"progress\":{\"overruns\":2}}"
                    .into(),
        };
        store.put_jobs(&[attempt, overran.clone()]).expect("put");
        let runs = store
            .task_runs(&["full_ports", "liveness", "admin_panels"], at(100))
            .expect("runs");
        assert_eq!(
            runs[0],
            StoredTaskRuns {
                task: "full_ports".into(),
                runs: 3,
                failed: 1,
                overruns: 2,
                last: Some(overran.data),
                last_done: Some(job("b", "full_ports", 100, "done").data),
                last_failed: Some(job("c", "full_ports", 200, "failed").data),
            }
        );
        assert_eq!(
            (runs[1].runs, runs[1].last.is_some()),
            (0, true),
            "ran before the period"
        );
        assert_eq!(
            runs[2],
            StoredTaskRuns {
                task: "admin_panels".into(),
                runs: 0,
                failed: 0,
                overruns: 0,
                last: None,
                last_done: None,
                last_failed: None
            }
        );
        // A stop cuts the running one short.
        assert_eq!(store.interrupt_running_jobs("stopped").expect("interrupt"), 1);
        let runs = store.task_runs(&["full_ports"], at(100)).expect("runs");
        assert_eq!((runs[0].runs, runs[0].failed), (3, 2));
        let last: serde_json::Value =
            serde_json::from_str(runs[0].last.as_deref().expect("last")).expect("json");
        assert_eq!(
            (&last["state"], &last["error"], &last["id"]),
            (&"failed".into(), &"stopped".into(), &"d".into())
        );
        assert_eq!(runs[0].last, runs[0].last_failed);
        // The reads use the task indexes.
        let conn = store.conn();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT data FROM jobs WHERE json_extract(data, '$.task') = 'x' \
                 AND json_extract(data, '$.state') = 'failed' ORDER BY started_at DESC, id DESC LIMIT 1",
            )
            .expect("plan")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        assert!(plan.iter().any(|l| l.contains("jobs_task_state")), "{plan:?}");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", 99).expect("pragma");
        }
        let err = EmbeddedStore::open(&path).expect_err("too new");
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
