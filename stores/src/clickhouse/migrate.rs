//! The schema: numbered migrations in `sql/`, compiled in and applied in order.

use clickhouse::Row;
use serde::Deserialize;

use super::{ClickHouseError, ClickHouseStore};

/// The numbered migrations in `sql/`, oldest first.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "001_init.sql", include_str!("../../../sql/001_init.sql")),
    (
        2,
        "002_read_model.sql",
        include_str!("../../../sql/002_read_model.sql"),
    ),
    (3, "003_reports.sql", include_str!("../../../sql/003_reports.sql")),
    (
        4,
        "004_deliveries.sql",
        include_str!("../../../sql/004_deliveries.sql"),
    ),
    (
        5,
        "005_projector_state.sql",
        include_str!("../../../sql/005_projector_state.sql"),
    ),
];

/// The newest schema version this build knows.
pub fn latest_schema_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
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
                if let Some((table, column)) = added_column(&stmt) {
                    if self.has_column(table, column).await? {
                        continue; // an interrupted run of this migration added it
                    }
                }
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

    async fn has_column(&self, table: &str, column: &str) -> Result<bool, ClickHouseError> {
        let n = self
            .server
            .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
            .bind(&self.settings.database)
            .bind(table)
            .bind(column)
            .fetch_one::<u64>()
            .await
            .map_err(self.err("reading system.columns"))?;
        Ok(n > 0)
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
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `(table, column)` of an `ALTER TABLE t ADD COLUMN c ...` statement.
fn added_column(stmt: &str) -> Option<(&str, &str)> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    match words.as_slice() {
        [alter, table_kw, table, add, column_kw, column, ..]
            if alter.eq_ignore_ascii_case("ALTER")
                && table_kw.eq_ignore_ascii_case("TABLE")
                && add.eq_ignore_ascii_case("ADD")
                && column_kw.eq_ignore_ascii_case("COLUMN") =>
        {
            Some((table, column))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_column_statements_are_recognised() {
        assert_eq!(
            added_column("ALTER TABLE port_state ADD COLUMN risk String DEFAULT 'risk_port'"),
            Some(("port_state", "risk"))
        );
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS x (a UInt8)"), None);
        // Every statement of every migration splits into something the server runs.
        for (_, name, sql) in MIGRATIONS {
            assert!(!statements(sql).is_empty(), "{name}");
        }
    }
}
