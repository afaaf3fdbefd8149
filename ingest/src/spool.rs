//! The probe node's spool: a bounded local file between the scanner and Kafka.
//!
//! Every event a probe node records goes into the spool first (SQLite, WAL, one row
//! per append, events in order) and counts as recorded once it is there. A drain thread
//! sends the oldest events to the observations topic and deletes exactly those the
//! broker acknowledged. While the broker is unreachable the spool grows, and the
//! events go out in their original order once it is back: nothing is lost while
//! the spool has room. When it is full, new events are refused, counted
//! (`portwatch_spool_refused_events_total`, the heartbeat's `spool_overflow`) and
//! logged as errors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use portwatch_events::Event;
use rdkafka::producer::{FutureProducer, Producer};
use rusqlite::{params, Connection};

use crate::kafka::{kafka_err, produce_keyed, KafkaSettings};
use crate::{AppendReceipt, EventLog, LogError, Offset, Record};

/// Spool tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The spool database file.
    pub path: PathBuf,
    /// Most bytes of event payload the spool holds before refusing events.
    pub max_bytes: u64,
    /// How long one delivery attempt may take before the drain backs off.
    pub produce_timeout: Duration,
}

/// Counters of a spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Events waiting to be delivered.
    pub spooled: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Events refused because the spool was full (since start).
    pub refused: u64,
    /// Events delivered (since start).
    pub delivered: u64,
}

const DRAIN_BATCH: usize = 2000;

struct Inner {
    path: PathBuf,
    db: Mutex<Connection>,
    max_bytes: u64,
    bytes: AtomicU64,
    spooled: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    stop: AtomicBool,
    wake: (Mutex<bool>, Condvar),
}

/// A spool in front of the observations topic, usable as an [`EventLog`] for
/// appending (reads are not offered: the log to read is Kafka).
pub struct SpoolLog {
    inner: Arc<Inner>,
    drainer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SpoolLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolLog")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> LogError + '_ {
    move |source| LogError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

impl SpoolLog {
    /// Open (or create) the spool and start draining it to `kafka`'s observations
    /// topic. Events left by an earlier run are sent first.
    pub fn open(settings: SpoolSettings, kafka: &KafkaSettings) -> Result<Self, LogError> {
        let path = settings.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LogError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let db = Connection::open(&path).map_err(sqlite(&path))?;
        db.execute_batch(
            "PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, events INTEGER NOT NULL, bytes INTEGER NOT NULL, body TEXT NOT NULL);",
        )
        .map_err(sqlite(&path))?;
        let (count, bytes): (i64, i64) = db
            .query_row(
                "SELECT coalesce(sum(events), 0), coalesce(sum(bytes), 0) FROM batches",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sqlite(&path))?;
        if count > 0 {
            tracing::info!(events = count, bytes, path = %path.display(), "spool holds events from an earlier run; sending them first");
        }
        let producer_config = kafka.producer_config(settings.produce_timeout);
        let producer: FutureProducer = producer_config
            .create()
            .map_err(|e| kafka_err("creating producer", e))?;
        let inner = Arc::new(Inner {
            path,
            db: Mutex::new(db),
            max_bytes: settings.max_bytes,
            bytes: AtomicU64::new(bytes as u64),
            spooled: AtomicU64::new(count as u64),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
        });
        let topic = kafka.topics.observations.clone();
        let drain_inner = inner.clone();
        let drainer = std::thread::Builder::new()
            .name("spool-drain".into())
            .spawn(move || drain(&drain_inner, producer, &producer_config, &topic))
            .map_err(|source| LogError::Io {
                path: "spool drain thread".into(),
                source,
            })?;
        Ok(Self {
            inner,
            drainer: Mutex::new(Some(drainer)),
        })
    }

    /// Current counters.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            spooled: self.inner.spooled.load(Ordering::Relaxed),
            bytes: self.inner.bytes.load(Ordering::Relaxed),
            refused: self.inner.refused.load(Ordering::Relaxed),
            delivered: self.inner.delivered.load(Ordering::Relaxed),
        }
    }

    /// Wait until the spool is empty or `timeout` passes; true when empty.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.inner.spooled.load(Ordering::Relaxed) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stop the drain thread (events still spooled stay in the file for next time).
    pub fn close(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.wake.1.notify_all();
        if let Some(handle) = self.drainer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SpoolLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn drain(inner: &Inner, mut producer: FutureProducer, config: &rdkafka::ClientConfig, topic: &str) {
    let mut backoff = Duration::from_millis(200);
    let mut failing_since: Option<std::time::Instant> = None;
    while !inner.stop.load(Ordering::Relaxed) {
        // The oldest appended batches, until about DRAIN_BATCH events.
        let rows: Vec<(i64, String)> = {
            let db = inner.db.lock().unwrap_or_else(|p| p.into_inner());
            let rows = db
                .prepare_cached("SELECT seq, events, body FROM batches ORDER BY seq LIMIT 256")
                .and_then(|mut st| {
                    let mut out = Vec::new();
                    let mut events = 0i64;
                    let mut it = st.query([])?;
                    while let Some(r) = it.next()? {
                        out.push((r.get::<_, i64>(0)?, r.get::<_, String>(2)?));
                        events += r.get::<_, i64>(1)?;
                        if events >= DRAIN_BATCH as i64 {
                            break;
                        }
                    }
                    Ok(out)
                });
            match rows {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::error!(error = %err, "spool read failed");
                    Vec::new()
                }
            }
        };
        if rows.is_empty() {
            let (lock, cvar) = &inner.wake;
            let mut woken = lock.lock().unwrap_or_else(|p| p.into_inner());
            if !*woken {
                woken = cvar
                    .wait_timeout(woken, Duration::from_millis(500))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            *woken = false;
            continue;
        }
        // (row index, key, body) for every spooled event, in order.
        let mut owner = Vec::new();
        let mut records: Vec<(String, String)> = Vec::new();
        for (i, (_, body)) in rows.iter().enumerate() {
            for (key, event) in body.lines().filter_map(|l| l.split_once('\t')) {
                owner.push(i);
                records.push((key.to_string(), event.to_string()));
            }
        }
        let started = std::time::Instant::now();
        let results = futures::executor::block_on(produce_keyed(&producer, topic, &records));
        tracing::debug!(
            records = records.len(),
            ms = started.elapsed().as_millis() as u64,
            "spool batch produced"
        );
        // Per spooled batch: delete it when all its events were acknowledged, else keep
        // exactly the unacknowledged ones (in order) for the next attempt.
        let mut left: Vec<Vec<&(String, String)>> = vec![Vec::new(); rows.len()];
        let (mut delivered, mut delivered_bytes) = (0u64, 0u64);
        for ((record, result), &i) in records.iter().zip(&results).zip(&owner) {
            if result.is_ok() {
                delivered += 1;
                delivered_bytes += record.1.len() as u64;
            } else {
                left[i].push(record);
            }
        }
        if delivered > 0 {
            let mut db = inner.db.lock().unwrap_or_else(|p| p.into_inner());
            let updated = db.transaction().and_then(|tx| {
                for ((seq, _), keep) in rows.iter().zip(&left) {
                    if keep.is_empty() {
                        tx.prepare_cached("DELETE FROM batches WHERE seq = ?1")?
                            .execute(params![seq])?;
                    } else {
                        let body: Vec<String> = keep.iter().map(|(k, b)| format!("{k}\t{b}")).collect();
                        let bytes: usize = keep.iter().map(|r| r.1.len()).sum();
                        tx.prepare_cached(
                            "UPDATE batches SET events = ?2, bytes = ?3, body = ?4 WHERE seq = ?1",
                        )?
                        .execute(params![
                            seq,
                            keep.len() as i64,
                            bytes as i64,
                            body.join("\n")
                        ])?;
                    }
                }
                tx.commit()
            });
            match updated {
                Ok(()) => {
                    inner.bytes.fetch_sub(delivered_bytes, Ordering::Relaxed);
                    inner.spooled.fetch_sub(delivered, Ordering::Relaxed);
                    inner.delivered.fetch_add(delivered, Ordering::Relaxed);
                    metrics::counter!("portwatch_spool_delivered_events_total").increment(delivered);
                }
                // The batches stay and go out again: duplicates the fold drops, not a loss.
                Err(err) => tracing::error!(error = %err, "spool update failed"),
            }
        }
        metrics::gauge!("portwatch_spool_events").set(inner.spooled.load(Ordering::Relaxed) as f64);
        if let Some(err) = results.into_iter().find_map(Result::err) {
            let since = *failing_since.get_or_insert_with(std::time::Instant::now);
            tracing::warn!(
                error = %err,
                spooled = inner.spooled.load(Ordering::Relaxed),
                failing_for_secs = since.elapsed().as_secs(),
                "broker unreachable; events stay in the spool"
            );
            // An idempotent producer whose messages timed out can be left fenced or in
            // a fatal state for good; a fresh one (new producer id) starts clean. The
            // events it resends keep their order and ids.
            match config.create::<FutureProducer>() {
                Ok(fresh) => producer = fresh,
                Err(e) => tracing::error!(error = %e, "cannot recreate the producer"),
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            if let Some(since) = failing_since.take() {
                tracing::info!(
                    after_secs = since.elapsed().as_secs(),
                    "broker reachable again; spool draining"
                );
            }
            backoff = Duration::from_millis(200);
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}

impl EventLog for SpoolLog {
    fn partitions(&self) -> u32 {
        1
    }

    fn append(&self, events: &[Event]) -> Result<AppendReceipt, LogError> {
        let rows: Vec<(String, String)> = events.iter().map(|e| (e.key(), e.to_json())).collect();
        let size: u64 = rows.iter().map(|r| r.1.len() as u64).sum();
        // One row per append (a job's host result, usually): `key TAB event` lines.
        // Keys are addresses and compact JSON has no raw tab or newline.
        let body: Vec<String> = rows.iter().map(|(k, b)| format!("{k}\t{b}")).collect();
        let held = self.inner.bytes.load(Ordering::Relaxed);
        if held + size > self.inner.max_bytes {
            let refused = self
                .inner
                .refused
                .fetch_add(events.len() as u64, Ordering::Relaxed)
                + events.len() as u64;
            metrics::counter!("portwatch_spool_refused_events_total").increment(events.len() as u64);
            tracing::error!(
                events = events.len(),
                refused_total = refused,
                bytes = held,
                limit = self.inner.max_bytes,
                "SPOOL FULL: the broker has been unreachable too long; observations are being dropped"
            );
            return Err(LogError::SpoolFull {
                path: self.inner.path.display().to_string(),
                bytes: held,
                limit: self.inner.max_bytes,
                refused,
            });
        }
        {
            let db = self.inner.db.lock().unwrap_or_else(|p| p.into_inner());
            db.prepare_cached("INSERT INTO batches (events, bytes, body) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![rows.len() as i64, size as i64, body.join("\n")]))
                .map_err(sqlite(&self.inner.path))?;
        }
        self.inner.bytes.fetch_add(size, Ordering::Relaxed);
        self.inner
            .spooled
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let (lock, cvar) = &self.inner.wake;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_one();
        Ok(AppendReceipt {
            appended: events.len(),
            duplicates: 0,
        })
    }

    fn read(&self, _partition: u32, _from: Offset, _max: usize) -> Result<Vec<Record>, LogError> {
        // A probe node's spool is write-only; readers consume the Kafka topic.
        Ok(Vec::new())
    }

    fn end_offset(&self, _partition: u32) -> Result<Offset, LogError> {
        Ok(0)
    }
}
