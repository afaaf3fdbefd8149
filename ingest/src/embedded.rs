//! The embedded engine: one SQLite file in WAL mode.
//!
//! One partition is enough here: a single writer serialises appends anyway, and one
//! global order makes replays trivially deterministic. The offset is SQLite's rowid,
//! which only grows (AUTOINCREMENT), so an offset is never reused even after a crash.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use portwatch_events::Event;
use rusqlite::{params, Connection, OpenFlags};

use crate::{AppendReceipt, EventLog, Journal, JournalRecord, LogError, Offset, Record};

/// Event log in one SQLite database file.
#[derive(Debug)]
pub struct EmbeddedLog {
    path: PathBuf,
    // Separate connections let readers run while a writer commits (WAL).
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    offset    INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    key       TEXT NOT NULL,
    ts        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    body      TEXT NOT NULL
);
-- One host's history (the console's exposure history), newest first.
CREATE INDEX IF NOT EXISTS events_by_key ON events (key, offset);
CREATE TABLE IF NOT EXISTS decisions (
    offset    INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    body      TEXT NOT NULL
);
";

impl EmbeddedLog {
    /// Open (or create) the log at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LogError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let err = |source| LogError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        // Two processes opening a new log at once (`up` starting while `token
        // create` runs) can find the file busy while the other switches it to WAL,
        // which SQLite's busy handler does not wait out: try again for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let writer = loop {
            match Self::open_writer(&path) {
                Ok(conn) => break conn,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(err(e)),
            }
        };
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        reader.execute_batch("PRAGMA busy_timeout=10000;").map_err(err)?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    /// The writing connection: WAL, full sync, the schema in place.
    fn open_writer(path: &Path) -> Result<Connection, rusqlite::Error> {
        let writer = Connection::open(path)?;
        // FULL: the log is the source of truth; an acknowledged append must survive a
        // power cut, not only a process crash.
        writer
            .execute_batch("PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
        writer.execute_batch(SCHEMA)?;
        Ok(writer)
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite_err(&self, source: rusqlite::Error) -> LogError {
        LogError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Append raw JSON lines as they are (used by tests of poison records and by
    /// imports that must keep the original bytes). Each needs a unique `id`.
    pub fn append_raw(&self, id: &str, key: &str, body: &str) -> Result<bool, LogError> {
        let conn = lock(&self.writer);
        let n = conn
            .execute(
                "INSERT OR IGNORE INTO events (id, key, ts, kind, body) VALUES (?1, ?2, '', 'raw', ?3)",
                params![id, key, body],
            )
            .map_err(|e| self.sqlite_err(e))?;
        Ok(n == 1)
    }
}

impl EmbeddedLog {
    /// The records of one partition key (a host's address), newest first: at most
    /// `max` of them, all before `before` when given.
    pub fn of_key(&self, key: &str, before: Option<Offset>, max: usize) -> Result<Vec<Record>, LogError> {
        let conn = lock(&self.reader);
        let mut stmt = conn
            .prepare_cached(
                "SELECT offset, body FROM events WHERE key = ?1 AND offset < ?2 ORDER BY offset DESC LIMIT ?3",
            )
            .map_err(|e| self.sqlite_err(e))?;
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![key, before, max], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|e| self.sqlite_err(e))?;
        rows.map(|row| {
            let (offset, body) = row.map_err(|e| self.sqlite_err(e))?;
            Ok(Record {
                partition: 0,
                offset: offset as Offset,
                event: Event::from_json(&body),
            })
        })
        .collect()
    }
}

// A poisoned mutex only means another thread panicked while holding the connection;
// SQLite's own transaction rollback keeps the database consistent, so carry on.
fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventLog for EmbeddedLog {
    fn partitions(&self) -> u32 {
        1
    }

    fn append(&self, events: &[Event]) -> Result<AppendReceipt, LogError> {
        if events.is_empty() {
            return Ok(AppendReceipt::default());
        }
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(|e| self.sqlite_err(e))?;
        let mut receipt = AppendReceipt::default();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (id, key, ts, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.sqlite_err(e))?;
            for event in events {
                let n = stmt
                    .execute(params![
                        event.id.to_string(),
                        event.key(),
                        event.ts.to_rfc3339(),
                        event.observation.kind(),
                        event.to_json(),
                    ])
                    .map_err(|e| self.sqlite_err(e))?;
                if n == 1 {
                    receipt.appended += 1;
                } else {
                    receipt.duplicates += 1;
                }
            }
        }
        tx.commit().map_err(|e| self.sqlite_err(e))?;
        Ok(receipt)
    }

    fn read(&self, partition: u32, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        if partition != 0 {
            return Err(LogError::NoSuchPartition {
                partition,
                partitions: 1,
            });
        }
        let conn = lock(&self.reader);
        let mut stmt = conn
            .prepare_cached("SELECT offset, body FROM events WHERE offset >= ?1 ORDER BY offset LIMIT ?2")
            .map_err(|e| self.sqlite_err(e))?;
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![from, max], |row| {
                let offset: i64 = row.get(0)?;
                let body: String = row.get(1)?;
                Ok((offset, body))
            })
            .map_err(|e| self.sqlite_err(e))?;
        let mut records = Vec::new();
        for row in rows {
            let (offset, body) = row.map_err(|e| self.sqlite_err(e))?;
            records.push(Record {
                partition: 0,
                offset: offset as Offset,
                event: Event::from_json(&body),
            });
        }
        Ok(records)
    }

    fn end_offset(&self, partition: u32) -> Result<Offset, LogError> {
        if partition != 0 {
            return Err(LogError::NoSuchPartition {
                partition,
                partitions: 1,
            });
        }
        let conn = lock(&self.reader);
        let max: Option<i64> = conn
            .query_row("SELECT MAX(offset) FROM events", [], |row| row.get(0))
            .map_err(|e| self.sqlite_err(e))?;
        Ok(max.map_or(0, |m| m as Offset + 1))
    }
}

/// The journal lives in the same file as the observations: one file to back up, and
/// deleting the projection state (`state.db`) leaves both.
impl Journal for EmbeddedLog {
    fn append_decisions(&self, records: &[(String, String)]) -> Result<(), LogError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(|e| self.sqlite_err(e))?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO decisions (id, body) VALUES (?1, ?2)")
                .map_err(|e| self.sqlite_err(e))?;
            for (id, body) in records {
                stmt.execute(params![id, body]).map_err(|e| self.sqlite_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.sqlite_err(e))
    }

    fn read_decisions(&self, from: Offset, max: usize) -> Result<Vec<JournalRecord>, LogError> {
        let conn = lock(&self.reader);
        let mut stmt = conn
            .prepare_cached("SELECT offset, body FROM decisions WHERE offset >= ?1 ORDER BY offset LIMIT ?2")
            .map_err(|e| self.sqlite_err(e))?;
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![from, max], |row| {
                Ok(JournalRecord {
                    offset: row.get::<_, i64>(0)? as Offset,
                    body: row.get(1)?,
                })
            })
            .map_err(|e| self.sqlite_err(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use portwatch_events::{HostLiveness, JobId, Observation, Origin, Task};

    fn event(ip: &str) -> Event {
        let origin = Origin {
            node: "test".into(),
            job: JobId::new(),
            task: Task::Liveness,
        };
        Event::new(
            &origin,
            Utc::now(),
            Observation::HostLiveness(HostLiveness {
                ip: ip.parse().expect("ip"),
                alive: true,
                probes: vec![],
            }),
        )
    }

    #[test]
    fn append_read_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log/events.db");
        let events: Vec<Event> = (1..=5).map(|i| event(&format!("127.0.0.{i}"))).collect();
        {
            let log = EmbeddedLog::open(&path).expect("open");
            assert_eq!(log.end_offset(0).expect("end"), 0);
            let receipt = log.append(&events).expect("append");
            assert_eq!(
                receipt,
                AppendReceipt {
                    appended: 5,
                    duplicates: 0
                }
            );
        }
        let log = EmbeddedLog::open(&path).expect("reopen");
        let all = log.read(0, 0, 100).expect("read");
        assert_eq!(all.len(), 5);
        let decoded: Vec<Event> = all.iter().map(|r| r.event.clone().expect("decodes")).collect();
        assert_eq!(decoded, events);
        assert!(all.windows(2).all(|w| w[0].offset < w[1].offset));
        let tail = log.read(0, all[3].offset, 100).expect("tail");
        assert_eq!(tail.len(), 2);
        assert_eq!(log.end_offset(0).expect("end"), all[4].offset + 1);
        assert!(matches!(
            log.read(3, 0, 1),
            Err(LogError::NoSuchPartition { partition: 3, .. })
        ));
    }

    #[test]
    fn one_hosts_records_newest_first_in_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path().join("events.db")).expect("open");
        let events: Vec<Event> = (0..7)
            .map(|i| event(if i % 2 == 0 { "127.0.0.1" } else { "127.0.0.2" }))
            .collect();
        log.append(&events).expect("append");
        let first = log.of_key("127.0.0.1", None, 3).expect("first page");
        let ids = |rs: &[Record]| {
            rs.iter()
                .map(|r| r.event.clone().expect("decodes").id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&first), vec![events[6].id, events[4].id, events[2].id]);
        let rest = log
            .of_key("127.0.0.1", first.last().map(|r| r.offset), 3)
            .expect("next page");
        assert_eq!(ids(&rest), vec![events[0].id]);
        assert!(log.of_key("127.0.0.9", None, 3).expect("nobody").is_empty());
    }

    #[test]
    fn retried_appends_do_not_duplicate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path().join("events.db")).expect("open");
        let events: Vec<Event> = (1..=3).map(|i| event(&format!("127.0.0.{i}"))).collect();
        log.append(&events[..2]).expect("first");
        let receipt = log.append(&events).expect("retry");
        assert_eq!(
            receipt,
            AppendReceipt {
                appended: 1,
                duplicates: 2
            }
        );
        assert_eq!(log.read(0, 0, 100).expect("read").len(), 3);
    }

    #[test]
    fn the_journal_keeps_the_first_record_of_an_id_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path().join("events.db")).expect("open");
        let rec = |id: &str, body: &str| (id.to_string(), body.to_string());
        log.append_decisions(&[rec("a", "{\"n\":1}"), rec("b", "{\"n\":2}")])
            .expect("append");
        log.append_decisions(&[rec("a", "{\"n\":3}"), rec("c", "{\"n\":4}")])
            .expect("retry");
        let all = log.read_decisions(0, 10).expect("read");
        let bodies: Vec<&str> = all.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(bodies, ["{\"n\":1}", "{\"n\":2}", "{\"n\":4}"]);
        let tail = log.read_decisions(all[1].offset + 1, 10).expect("tail");
        assert_eq!(tail.len(), 1);
        // The observations are another sequence.
        assert_eq!(log.end_offset(0).expect("end"), 0);
    }

    #[test]
    fn undecodable_records_are_reported_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path().join("events.db")).expect("open");
        log.append(&[event("127.0.0.1")]).expect("append");
        assert!(log.append_raw("poison-1", "x", "{\"v\":7}").expect("raw"));
        log.append(&[event("127.0.0.2")]).expect("append");
        let records = log.read(0, 0, 10).expect("read");
        assert_eq!(records.len(), 3);
        assert!(records[0].event.is_ok() && records[2].event.is_ok());
        let err = records[1].event.as_ref().expect_err("poison");
        assert!(err.to_string().contains("`v` = 7"));
    }
}
