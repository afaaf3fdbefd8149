//! The ClickHouse store of the scale-out deployment.
//!
//! Same contract as the embedded store, kept without transactions: every row the
//! projector writes carries `ver`, the log offset of the last event that changed it,
//! and the tables are `ReplacingMergeTree(ver)`. The projector writes a batch's rows
//! first and its checkpoint last: the images of the hosts changed since the previous
//! one (`projector_state`), then the next offset ([`Checkpoint`]). A crash in between
//! makes the next owner of the partition resume from the previous checkpoint and fold
//! the same events again (skipping a host's events that an image written ahead of the
//! offset already holds), which writes the very same rows with the very same
//! versions: nothing lost, nothing doubled once read with `FINAL`.
//!
//! The schema lives in `sql/` as numbered migrations (see sql/README.md); they are
//! compiled in and applied by [`ClickHouseStore::migrate`].

mod migrate;
mod read;
mod rows;
mod write;

use clickhouse::Client;

pub use migrate::{latest_schema_version, statements, MigrateReport, MIGRATIONS};
pub use rows::{Checkpoint, JobRow, ObservationRow, ProbeNodeRow, TaskJobCounts, TaskRunRows};

/// How to reach ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseSettings {
    /// HTTP interface, e.g. `http://127.0.0.1:8123` or `https://ch.example:8443`.
    pub url: String,
    /// Database holding portwatch's tables (created by `migrate`).
    pub database: String,
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// PEM bundle of a private CA trusted for the server's certificate, beside the
    /// system's roots (https:// URLs).
    pub ca_file: Option<std::path::PathBuf>,
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
    /// The TLS client could not be set up (`ca_file`).
    #[error("clickhouse at {url}: TLS set-up with ca_file {ca_file:?}: {why}")]
    Tls {
        /// Server URL.
        url: String,
        /// The CA bundle.
        ca_file: Option<std::path::PathBuf>,
        /// Why.
        why: String,
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

/// The connector under the ClickHouse client: http:// and https://, the server's
/// certificate checked against the system's roots plus `ca_file`.
fn connector(
    settings: &ClickHouseSettings,
) -> Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, String> {
    let extra = match &settings.ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| e.to_string())?;
            portwatch_trust::parse_pem(&pem).map_err(|e| e.to_string())?
        }
    };
    let tls = portwatch_trust::client_config(&extra).map_err(|e| e.to_string())?;
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_keepalive(Some(std::time::Duration::from_secs(60)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp))
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

impl ClickHouseStore {
    /// A store for `settings` (no connection is made until the first query). Fails
    /// only when `ca_file` cannot be read as a CA.
    pub fn new(settings: ClickHouseSettings) -> Result<Self, ClickHouseError> {
        let connector = connector(&settings).map_err(|why| ClickHouseError::Tls {
            url: portwatch_events::redact::url(&settings.url),
            ca_file: settings.ca_file.clone(),
            why,
        })?;
        // Idle connections close before the server's keep-alive (3 s on older
        // servers) would close them under a request.
        let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build(connector);
        let mut server = Client::with_http_client(http)
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
        Ok(Self {
            client,
            server,
            settings,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ClickHouseSettings {
        &self.settings
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> ClickHouseError + '_ {
        let what = what.into();
        move |source| ClickHouseError::Query {
            url: portwatch_events::redact::url(&self.settings.url),
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
}
