//! Stores: where projected state lives and where the API reads it.
//!
//! `probes → event log → projections → **stores** → alerts / API / dashboards`
//!
//! A projection owns its progress: [`EmbeddedStore::commit`] writes the changed rows
//! *and* the log offset that produced them in one SQLite transaction, so after a
//! crash the projector resumes exactly where its last committed state ends — nothing
//! is lost and nothing is folded twice. The ClickHouse store of the scale-out
//! deployment keeps the same contract with versioned rows.
//!
//! Each row is kept whole as JSON next to the few columns queries filter on, so what
//! the fold produced is what the store returns, bit for bit.

mod clickhouse;

pub use clickhouse::{
    latest_schema_version, statements, Batch, Checkpoint, ClickHouseError, ClickHouseSettings,
    ClickHouseStore, JobRow, MigrateReport, ObservationRow, ProbeNodeRow, Versioned,
    MIGRATIONS as CLICKHOUSE_MIGRATIONS,
};

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use portwatch_projections::{
    sort_episodes, ChangeSet, Episode, FoldConfig, HostRow, PortRow, PortState, Snapshot, State,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Schema version of the embedded store (`PRAGMA user_version`).
pub const STORE_SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

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

/// Which port rows to return.
#[derive(Debug, Clone, Default)]
pub struct PortFilter {
    /// Only rows in this state.
    pub state: Option<PortState>,
    /// Only rows of this host.
    pub ip: Option<IpAddr>,
}

/// Which episodes to return.
#[derive(Debug, Clone, Default)]
pub struct EpisodeFilter {
    /// Only open (`Some(true)`) or closed (`Some(false)`) episodes.
    pub open: Option<bool>,
    /// Only episodes of this host.
    pub ip: Option<IpAddr>,
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
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;")
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
        let ports = self.ports(&PortFilter::default())?;
        let episodes = self.episodes(&EpisodeFilter {
            open: Some(true),
            ip: None,
        })?;
        let hosts = self.hosts()?;
        Ok(State::from_rows(cfg, ports, episodes, hosts))
    }

    /// Write the changed rows and the projection's new offset in one transaction.
    pub fn commit(
        &self,
        projection: &str,
        partition: u32,
        next_offset: u64,
        cfg: FoldConfig,
        changes: &ChangeSet,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut put_port = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO ports (ip, proto, port, state, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.err(e))?;
            for row in changes.ports.values() {
                put_port
                    .execute(params![
                        row.ip.to_string(),
                        row.proto.as_str(),
                        row.port,
                        row.state.as_str(),
                        to_json(row),
                    ])
                    .map_err(|e| self.err(e))?;
            }
            let mut put_episode = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO episodes (id, ip, proto, port, open, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.err(e))?;
            for ep in changes.episodes.values() {
                put_episode
                    .execute(params![
                        ep.id,
                        ep.ip.to_string(),
                        ep.proto.as_str(),
                        ep.port,
                        ep.closed_at.is_none(),
                        to_json(ep),
                    ])
                    .map_err(|e| self.err(e))?;
            }
            let mut put_host = tx
                .prepare_cached("INSERT OR REPLACE INTO hosts (ip, data) VALUES (?1, ?2)")
                .map_err(|e| self.err(e))?;
            for host in changes.hosts.values() {
                put_host
                    .execute(params![host.ip.to_string(), to_json(host)])
                    .map_err(|e| self.err(e))?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO offsets (projection, partition, next_offset) VALUES (?1, ?2, ?3)",
                params![projection, partition, next_offset as i64],
            )
            .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('close_after_misses', ?1)",
                params![cfg.close_after_misses.to_string()],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Port rows, sorted by (ip, proto, port).
    pub fn ports(&self, filter: &PortFilter) -> Result<Vec<PortRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT data FROM ports WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR ip = ?2)",
            )
            .map_err(|e| self.err(e))?;
        let state = filter.state.map(|s| s.as_str());
        let ip = filter.ip.map(|ip| ip.to_string());
        let mut rows: Vec<PortRow> = self.decode_rows(&mut stmt, params![state, ip], "ports")?;
        rows.sort_by_key(|r| (r.ip, r.proto, r.port));
        Ok(rows)
    }

    /// Episodes, sorted by (ip, proto, port, opened_at).
    pub fn episodes(&self, filter: &EpisodeFilter) -> Result<Vec<Episode>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT data FROM episodes WHERE (?1 IS NULL OR open = ?1) AND (?2 IS NULL OR ip = ?2)",
            )
            .map_err(|e| self.err(e))?;
        let ip = filter.ip.map(|ip| ip.to_string());
        let mut rows: Vec<Episode> = self.decode_rows(&mut stmt, params![filter.open, ip], "episodes")?;
        sort_episodes(&mut rows);
        Ok(rows)
    }

    /// Host rows, sorted by address.
    pub fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT data FROM hosts")
            .map_err(|e| self.err(e))?;
        let mut rows: Vec<HostRow> = self.decode_rows(&mut stmt, [], "hosts")?;
        rows.sort_by_key(|h| h.ip);
        Ok(rows)
    }

    /// Everything, in canonical order (for comparisons with a rebuild).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            ports: self.ports(&PortFilter::default())?,
            episodes: self.episodes(&EpisodeFilter::default())?,
            hosts: self.hosts()?,
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
            let mut state = store.load_state(cfg).expect("load");
            // Two batches, as a projector would commit them.
            for (batch, next) in [(&events[..2], 2u64), (&events[2..], 4u64)] {
                let mut changes = ChangeSet::default();
                for ev in batch {
                    changes.extend(state.apply(ev));
                }
                store.commit("state", 0, next, cfg, &changes).expect("commit");
            }
        }
        let store = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(store.next_offset("state", 0).expect("offset"), 4);
        assert_eq!(store.next_offset("other", 0).expect("offset"), 0);
        let expected = portwatch_projections::fold_all(cfg, &events);
        assert_eq!(store.snapshot().expect("snapshot"), expected);
        let open = store
            .ports(&PortFilter {
                state: Some(PortState::Open),
                ip: None,
            })
            .expect("ports");
        assert_eq!(open.iter().map(|r| r.port).collect::<Vec<_>>(), vec![80]);
        assert_eq!(store.fold_config().expect("cfg"), Some(2));
        // The reloaded fold state continues exactly like the uninterrupted one.
        let mut state = store.load_state(cfg).expect("load");
        let next = scan("127.0.0.2", 30, vec![]);
        let mut all = events.clone();
        all.push(next.clone());
        let mut changes = ChangeSet::default();
        changes.extend(state.apply(&next));
        store.commit("state", 0, 5, cfg, &changes).expect("commit");
        assert_eq!(
            store.snapshot().expect("snapshot"),
            portwatch_projections::fold_all(cfg, &all)
        );
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
