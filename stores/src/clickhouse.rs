//! The ClickHouse store of the scale-out deployment.
//!
//! Same contract as the embedded store, kept without transactions: every row the
//! projector writes carries `ver`, the log offset of the last event that changed it,
//! and the tables are `ReplacingMergeTree(ver)`. The projector writes a batch's rows
//! first and its checkpoint (next offset + fold state, [`Checkpoint`]) last. A crash
//! in between makes the next owner of the partition resume from the previous
//! checkpoint and fold the same events again, which writes the very same rows with
//! the very same versions: nothing lost, nothing doubled once read with `FINAL`.
//!
//! The schema lives in `sql/` as numbered migrations (see sql/README.md); they are
//! compiled in and applied by [`ClickHouseStore::migrate`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use clickhouse::{Client, Row};
use portwatch_events::{Event, Observation, Timestamp};
use portwatch_projections::{
    sort_episodes, Alert, Change, Episode, HostRow, PortKey, PortRow, PortState, Snapshot, StateImage,
};
use serde::{Deserialize, Serialize};

/// The numbered migrations in `sql/`, oldest first.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[(1, "001_init.sql", include_str!("../../sql/001_init.sql"))];

/// The newest schema version this build knows.
pub fn latest_schema_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// How to reach ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseSettings {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding portwatch's tables (created by `migrate`).
    pub database: String,
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Let the client check row types against the server's schema. Needs a modern
    /// server; ClickHouse 18.16 lacks the format it uses, so it must be off there.
    pub validation: bool,
    /// LZ4-compress inserts and results on the wire (less network, more CPU on both
    /// ends; off pays on a local or fast link).
    pub compression: bool,
}

/// Errors of the ClickHouse store.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// A query failed (server down, SQL rejected, network).
    #[error("clickhouse at {url}: {what}: {source}")]
    Query {
        /// Server URL.
        url: String,
        /// What was being done.
        what: String,
        /// Underlying error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// The database has a newer schema than this build knows.
    #[error("clickhouse database {database} has schema version {found}, newer than this build knows ({known}); upgrade portwatch instead of migrating")]
    NewerSchema {
        /// Database.
        database: String,
        /// Version found.
        found: u32,
        /// Newest version known here.
        known: u32,
    },
    /// A stored row does not decode.
    #[error("clickhouse table {table} holds an unreadable row: {reason}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Why.
        reason: String,
    },
}

/// A fold checkpoint of one partition: everything before `next_offset` is folded
/// into `state`, and its rows are written.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The next offset to fold.
    pub next_offset: u64,
    /// The fold state after every event before it.
    pub state: StateImage,
}

/// A row value with the partition and version it was written with.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The row.
    pub row: T,
    /// Log partition of the events behind it.
    pub partition: u32,
    /// Offset of the last event that changed it.
    pub ver: u64,
}

/// Everything one projector batch writes: raw observations and the rows the fold
/// changed (each once, at its last version in the batch).
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Raw observation rows.
    pub observations: Vec<ObservationRow>,
    /// Changed port rows.
    pub ports: BTreeMap<PortKey, Versioned<PortRow>>,
    /// Changed episodes.
    pub episodes: BTreeMap<String, Versioned<Episode>>,
    /// Changed hosts.
    pub hosts: BTreeMap<IpAddr, Versioned<HostRow>>,
    /// New alerts.
    pub alerts: BTreeMap<String, Versioned<Alert>>,
}

impl Batch {
    /// Record the event at `partition`/`offset` (`body`: the record as it was in the
    /// log) and what folding it changed.
    pub fn add(
        &mut self,
        partition: u32,
        offset: u64,
        event: &Event,
        body: String,
        changes: Vec<Change>,
        alerts: Vec<Alert>,
    ) {
        let mut row = ObservationRow::without_body(event, partition, offset);
        row.body = body;
        self.observations.push(row);
        for change in changes {
            match change {
                Change::Port(row) => {
                    self.ports.insert(
                        (row.ip, row.proto, row.port),
                        Versioned {
                            row,
                            partition,
                            ver: offset,
                        },
                    );
                }
                Change::Episode(ep) => {
                    self.episodes.insert(
                        ep.id.clone(),
                        Versioned {
                            row: ep,
                            partition,
                            ver: offset,
                        },
                    );
                }
                Change::Host(host) => {
                    self.hosts.insert(
                        host.ip,
                        Versioned {
                            row: host,
                            partition,
                            ver: offset,
                        },
                    );
                }
            }
        }
        for alert in alerts {
            self.alerts.insert(
                alert.id.clone(),
                Versioned {
                    row: alert,
                    partition,
                    ver: offset,
                },
            );
        }
    }

    /// Rows in the batch (observations + changed rows).
    pub fn rows(&self) -> usize {
        self.observations.len()
            + self.ports.len()
            + self.episodes.len()
            + self.hosts.len()
            + self.alerts.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }
}

fn secs(ts: Timestamp) -> u32 {
    u32::try_from(ts.timestamp()).unwrap_or(if ts.timestamp() < 0 { 0 } else { u32::MAX })
}

fn json<T: Serialize>(value: &T) -> String {
    // Serialising these plain data types cannot fail (no maps with non-string keys).
    serde_json::to_string(value).unwrap_or_default()
}

/// One raw observation as stored in `observations`.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ObservationRow {
    id: String,
    ts: u32,
    ts_ms: i64,
    kind: String,
    node: String,
    job: String,
    task: String,
    ip: String,
    proto: String,
    open_ports: Vec<u16>,
    covered: String,
    alive: i8,
    wildcard: u8,
    body: String,
    kpartition: u32,
    koffset: u64,
}

impl ObservationRow {
    /// The row for `event`, read at `partition`/`offset`.
    pub fn new(event: &Event, partition: u32, offset: u64) -> Self {
        let mut row = Self::without_body(event, partition, offset);
        row.body = event.to_json();
        row
    }

    fn without_body(event: &Event, partition: u32, offset: u64) -> Self {
        let (proto, open_ports, covered, alive, wildcard) = match &event.observation {
            Observation::HostScan(s) => (
                s.proto.as_str().to_string(),
                s.open.clone(),
                s.covered.to_string(),
                i8::from(s.counts.host_answered()),
                u8::from(s.wildcard),
            ),
            Observation::HostLiveness(l) => (String::new(), Vec::new(), String::new(), i8::from(l.alive), 0),
            Observation::PortDetail(d) => (d.proto.as_str().to_string(), vec![d.port], String::new(), 1, 0),
        };
        Self {
            id: event.id.to_string(),
            ts: secs(event.ts),
            ts_ms: event.ts.timestamp_millis(),
            kind: event.observation.kind().to_string(),
            node: event.node.clone(),
            job: event.job.to_string(),
            task: event.task.as_str().to_string(),
            ip: event.observation.ip().to_string(),
            proto,
            open_ports,
            covered,
            alive,
            wildcard,
            body: String::new(),
            kpartition: partition,
            koffset: offset,
        }
    }
}

#[derive(Debug, Row, Serialize)]
struct PortStateRow {
    ip: String,
    proto: String,
    port: u16,
    state: String,
    first_seen: u32,
    last_seen: u32,
    last_change: u32,
    misses: u32,
    episode_id: String,
    evidence: String,
    service: String,
    product: String,
    svc_version: String,
    row: String,
    kpartition: u32,
    ver: u64,
}

#[derive(Debug, Row, Serialize)]
struct EpisodeRow {
    id: String,
    ip: String,
    proto: String,
    port: u16,
    opened_at: u32,
    last_seen: u32,
    last_negative_before_open: Option<u32>,
    mttd_bound_secs: Option<i64>,
    closed_at: Option<u32>,
    duration_secs: Option<i64>,
    observations: u64,
    row: String,
    kpartition: u32,
    ver: u64,
}

#[derive(Debug, Row, Serialize)]
struct HostStateRow {
    ip: String,
    alive: i8,
    last_alive: Option<u32>,
    last_checked: Option<u32>,
    scans: u64,
    open_ports: u32,
    wildcard: u8,
    row: String,
    kpartition: u32,
    ver: u64,
}

#[derive(Debug, Row, Serialize)]
struct AlertRow {
    id: String,
    kind: String,
    severity: String,
    ip: String,
    proto: String,
    port: u16,
    episode_id: String,
    at: u32,
    body: String,
    kpartition: u32,
    ver: u64,
}

#[derive(Debug, Row, Serialize)]
struct CheckpointRow {
    consumer_group: String,
    topic: String,
    kpartition: u32,
    next_offset: u64,
    state: String,
    written_at: u32,
    ver: u64,
}

#[derive(Debug, Row, Deserialize)]
struct CheckpointRead {
    next_offset: u64,
    state: String,
}

#[derive(Debug, Row, Deserialize)]
struct JsonRow {
    row: String,
}

/// A job row, as the control plane writes it.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct JobRow {
    /// Job id.
    pub id: String,
    /// Zone it was issued to.
    pub zone: String,
    /// Task.
    pub task: String,
    /// queued, leased, done or failed.
    pub state: String,
    /// Probe node that took it.
    pub node: String,
    /// Target addresses.
    pub targets: u64,
    /// Issue time, seconds.
    pub issued_at: u32,
    /// Last update, seconds.
    pub updated_at: u32,
    /// Free-form JSON detail (counts, error).
    pub detail: String,
    /// Version (update time in milliseconds).
    pub ver: u64,
}

/// A probe node row, as the control plane writes it from heartbeats.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct ProbeNodeRow {
    /// Node name.
    pub node: String,
    /// Zone.
    pub zone: String,
    /// Last heartbeat, seconds.
    pub last_heartbeat: u32,
    /// Job being run, if any.
    pub running_job: String,
    /// Events waiting in the node's spool.
    pub spooled: u64,
    /// Events the spool had to refuse since the node started.
    pub spool_overflow: u64,
    /// The heartbeat as JSON.
    pub body: String,
    /// Version (heartbeat time in milliseconds).
    pub ver: u64,
}

#[derive(Debug, Row, Deserialize)]
struct Version {
    version: u32,
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Version before.
    pub from: u32,
    /// Version after.
    pub to: u32,
    /// Migrations applied now.
    pub applied: Vec<String>,
}

/// Client of portwatch's ClickHouse database.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
    server: Client,
    settings: ClickHouseSettings,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("url", &self.settings.url)
            .field("database", &self.settings.database)
            .finish_non_exhaustive()
    }
}

/// Split a migration file into statements: comment lines dropped, statements end
/// with a line ending in `;`.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

impl ClickHouseStore {
    /// A store for `settings` (no connection is made until the first query).
    pub fn new(settings: ClickHouseSettings) -> Self {
        let mut server = Client::default()
            .with_url(&settings.url)
            .with_validation(settings.validation)
            .with_compression(if settings.compression {
                clickhouse::Compression::Lz4
            } else {
                clickhouse::Compression::None
            });
        if let Some(user) = &settings.user {
            server = server.with_user(user);
        }
        if let Some(password) = &settings.password {
            server = server.with_password(password);
        }
        let client = server.clone().with_database(&settings.database);
        Self {
            client,
            server,
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ClickHouseSettings {
        &self.settings
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> ClickHouseError + '_ {
        let what = what.into();
        move |source| ClickHouseError::Query {
            url: self.settings.url.clone(),
            what,
            source,
        }
    }

    /// Whether the server answers.
    pub async fn ping(&self) -> Result<(), ClickHouseError> {
        self.server
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(drop)
            .map_err(self.err("ping"))
    }

    /// Schema version of the database (0 when it or its migration table is missing).
    pub async fn schema_version(&self) -> Result<u32, ClickHouseError> {
        let exists = self
            .server
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
            .bind(&self.settings.database)
            .fetch_one::<u64>()
            .await
            .map_err(self.err("reading system.tables"))?;
        if exists == 0 {
            return Ok(0);
        }
        let rows = self
            .client
            .query("SELECT max(version) AS version FROM schema_migrations")
            .fetch_all::<Version>()
            .await
            .map_err(self.err("reading schema_migrations"))?;
        Ok(rows.first().map_or(0, |v| v.version))
    }

    /// Create the database and apply every migration it lacks. Idempotent; refuses
    /// a database whose schema is newer than this build.
    pub async fn migrate(&self) -> Result<MigrateReport, ClickHouseError> {
        let db = &self.settings.database;
        self.server
            .query(&format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(db)))
            .execute()
            .await
            .map_err(self.err(format!("creating database {db}")))?;
        self.client
            .query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime('UTC')) ENGINE = MergeTree() ORDER BY version",
            )
            .execute()
            .await
            .map_err(self.err("creating schema_migrations"))?;
        let from = self.check_schema().await?;
        let known = latest_schema_version();
        let mut applied = Vec::new();
        for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > from) {
            for stmt in statements(sql) {
                self.client
                    .query(&stmt)
                    .execute()
                    .await
                    .map_err(self.err(format!("applying {name}")))?;
            }
            self.client
                .query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
                .bind(version)
                .bind(name)
                .execute()
                .await
                .map_err(self.err(format!("recording {name}")))?;
            tracing::info!(version, name, database = %db, "migration applied");
            applied.push(name.to_string());
        }
        Ok(MigrateReport {
            from,
            to: from.max(known),
            applied,
        })
    }

    /// The database's schema version; an error if it is newer than this build knows.
    pub async fn check_schema(&self) -> Result<u32, ClickHouseError> {
        let found = self.schema_version().await?;
        let known = latest_schema_version();
        if found > known {
            return Err(ClickHouseError::NewerSchema {
                database: self.settings.database.clone(),
                found,
                known,
            });
        }
        Ok(found)
    }

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
        let state = serde_json::from_str(&row.state).map_err(|e| ClickHouseError::Corrupt {
            table: "projector_offsets",
            reason: format!("partition {partition}: {e}"),
        })?;
        Ok(Some(Checkpoint {
            next_offset: row.next_offset,
            state,
        }))
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

    /// Record that `group` has folded `partition` of `topic` up to `next_offset`.
    pub async fn commit_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        checkpoint: &Checkpoint,
        now: Timestamp,
    ) -> Result<(), ClickHouseError> {
        let row = CheckpointRow {
            consumer_group: group.to_string(),
            topic: topic.to_string(),
            kpartition: partition,
            next_offset: checkpoint.next_offset,
            state: json(&checkpoint.state),
            written_at: secs(now),
            ver: checkpoint.next_offset,
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

    async fn rows<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        sql: &str,
    ) -> Result<Vec<T>, ClickHouseError> {
        let rows = self
            .client
            .query(sql)
            .fetch_all::<JsonRow>()
            .await
            .map_err(self.err(format!("reading {table}")))?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(&r.row).map_err(|e| ClickHouseError::Corrupt {
                    table,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Port rows, open ones only when `open_only`.
    pub async fn ports(&self, open_only: bool) -> Result<Vec<PortRow>, ClickHouseError> {
        let mut rows: Vec<PortRow> = self
            .rows(
                "port_state",
                if open_only {
                    "SELECT row FROM port_state FINAL WHERE state = 'open'"
                } else {
                    "SELECT row FROM port_state FINAL"
                },
            )
            .await?;
        rows.sort_by_key(|r| (r.ip, r.proto, r.port));
        if open_only {
            rows.retain(|r| r.state == PortState::Open);
        }
        Ok(rows)
    }

    /// All episodes, in snapshot order.
    pub async fn episodes(&self) -> Result<Vec<Episode>, ClickHouseError> {
        let mut rows: Vec<Episode> = self.rows("episodes", "SELECT row FROM episodes FINAL").await?;
        sort_episodes(&mut rows);
        Ok(rows)
    }

    /// All hosts, by address.
    pub async fn hosts(&self) -> Result<Vec<HostRow>, ClickHouseError> {
        let mut rows: Vec<HostRow> = self.rows("hosts", "SELECT row FROM hosts FINAL").await?;
        rows.sort_by_key(|r| r.ip);
        Ok(rows)
    }

    /// All alerts, oldest first.
    pub async fn alerts(&self) -> Result<Vec<Alert>, ClickHouseError> {
        self.rows("alerts", "SELECT body AS row FROM alerts FINAL ORDER BY at, id")
            .await
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

    /// The whole projected state.
    pub async fn snapshot(&self) -> Result<Snapshot, ClickHouseError> {
        Ok(Snapshot {
            ports: self.ports(false).await?,
            episodes: self.episodes().await?,
            hosts: self.hosts().await?,
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
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}
