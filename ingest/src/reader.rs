//! Partitioned readers: how a projector takes records from a log.
//!
//! A projector owns some partitions of a log (all of them in the embedded
//! deployment; its share of a consumer group's in the scale-out one) and folds each
//! partition's records in offset order. A [`PartitionedReader`] hands it records of
//! the partitions it owns, tells it which it lost or newly gained, moves a
//! partition's read position on request, and sets aside records that do not decode.
//! Engines: [`EmbeddedReader`] here, `kafka::GroupReader` for Kafka.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_events::{DecodeError, Event};
use tokio::sync::Notify;

use crate::{EventLog, Offset};

/// One record as a projector sees it.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Partition.
    pub partition: u32,
    /// Offset in it.
    pub offset: Offset,
    /// The decoded event, or why it did not decode.
    pub event: Result<Event, DecodeError>,
    /// The record as stored (kept as the raw observation's body).
    pub body: String,
    /// Its key as stored (the host address), for a dead letter to keep.
    pub key: String,
    /// When the record was produced, milliseconds since the epoch, if the log says.
    pub produced_ms: Option<i64>,
}

/// What one poll brought.
#[derive(Debug, Default)]
pub struct Polled {
    /// Records of owned partitions, each partition's in offset order.
    pub records: Vec<LogRecord>,
    /// Partitions taken away since the last poll: their state is no longer this
    /// reader's to write.
    pub revoked: Vec<u32>,
}

/// A source of records for one projector.
pub trait PartitionedReader: Send {
    /// Up to `max` records, waiting at most `wait` for the first.
    fn poll(&mut self, max: usize, wait: Duration) -> BoxFuture<'_, Polled>;

    /// Whether `partition` was (re)assigned since its state was last loaded; the
    /// call clears the mark. State kept from an earlier ownership is then stale.
    fn take_fresh(&mut self, partition: u32) -> bool;

    /// Read `partition` from `offset` next.
    fn seek(&mut self, partition: u32, offset: Offset);

    /// Set aside a record that does not decode, with the reason (a dead-letter
    /// topic, or a log line); the fold goes on past it.
    fn reject<'a>(&'a mut self, record: &'a LogRecord, reason: &'a str) -> BoxFuture<'a, ()>;

    /// The next offsets of these partitions are durable in the store (for lag tools;
    /// the store's own record of them is what counts).
    fn committed(&mut self, offsets: &[(u32, Offset)]);

    /// Whether every offset of a partition holds a record, so that a record past the
    /// next expected offset means records not yet readable (Kafka without
    /// transactions) rather than offsets that never existed (SQLite row ids).
    fn contiguous(&self) -> bool;

    /// The gap, if `partition` no longer holds the records from `next` on (they were
    /// deleted or expired: Kafka retention): a [`crate::LogError::Gap`] naming the
    /// topic, partition and offsets. A broker round trip, at most a few seconds;
    /// never a gap where nothing expires.
    fn gap(&self, _partition: u32, _next: Offset) -> Result<Option<crate::LogError>, crate::LogError> {
        Ok(None)
    }
}

/// The embedded log read by the one projector of `portwatch up`: it owns every
/// partition, for ever.
pub struct EmbeddedReader {
    log: Arc<dyn EventLog>,
    /// Next offset to read, per partition.
    next: Vec<Offset>,
    /// Partitions not loaded yet.
    fresh: Vec<bool>,
    /// Wakes a waiting poll when events were appended.
    notify: Arc<Notify>,
}

impl std::fmt::Debug for EmbeddedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedReader")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl EmbeddedReader {
    /// A reader of every partition of `log`, woken by `notify` after appends.
    pub fn new(log: Arc<dyn EventLog>, notify: Arc<Notify>) -> Self {
        let partitions = log.partitions() as usize;
        Self {
            log,
            next: vec![0; partitions],
            fresh: vec![true; partitions],
            notify,
        }
    }

    /// Read off the async threads (SQLite blocks).
    async fn read(&self, max: usize) -> Vec<LogRecord> {
        let (log, next) = (self.log.clone(), self.next.clone());
        tokio::task::spawn_blocking(move || read_now(&*log, &next, max))
            .await
            .unwrap_or_default()
    }
}

fn read_now(log: &dyn EventLog, next: &[Offset], max: usize) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for (partition, &from) in next.iter().enumerate() {
        if out.len() >= max {
            break;
        }
        match log.read(partition as u32, from, max - out.len()) {
            Ok(records) => out.extend(records.into_iter().map(|r| LogRecord {
                partition: r.partition,
                offset: r.offset,
                body: String::new(),
                key: String::new(),
                event: r.event,
                produced_ms: None,
            })),
            // The next poll reads the same offsets again.
            Err(err) => tracing::warn!(partition, error = %err, "event log read failed; retrying"),
        }
    }
    out
}

impl PartitionedReader for EmbeddedReader {
    fn poll(&mut self, max: usize, wait: Duration) -> BoxFuture<'_, Polled> {
        async move {
            // Arm the wake-up before reading, so an append between the read and the
            // wait is not missed.
            let notify = self.notify.clone();
            let woken = notify.notified();
            let records = self.read(max).await;
            if !records.is_empty() {
                self.advance(&records);
                return Polled {
                    records,
                    revoked: Vec::new(),
                };
            }
            let _ = tokio::time::timeout(wait, woken).await;
            let records = self.read(max).await;
            self.advance(&records);
            Polled {
                records,
                revoked: Vec::new(),
            }
        }
        .boxed()
    }

    fn take_fresh(&mut self, partition: u32) -> bool {
        self.fresh
            .get_mut(partition as usize)
            .map(|f| std::mem::replace(f, false))
            .unwrap_or(false)
    }

    fn seek(&mut self, partition: u32, offset: Offset) {
        if let Some(next) = self.next.get_mut(partition as usize) {
            *next = offset;
        }
    }

    fn reject<'a>(&'a mut self, record: &'a LogRecord, reason: &'a str) -> BoxFuture<'a, ()> {
        // The embedded log keeps the record; it is skipped, counted and logged.
        tracing::error!(
            partition = record.partition,
            offset = record.offset,
            error = reason,
            "skipping undecodable event"
        );
        async {}.boxed()
    }

    fn committed(&mut self, _offsets: &[(u32, Offset)]) {}

    fn contiguous(&self) -> bool {
        false
    }
}

impl EmbeddedReader {
    fn advance(&mut self, records: &[LogRecord]) {
        for r in records {
            if let Some(next) = self.next.get_mut(r.partition as usize) {
                *next = (*next).max(r.offset + 1);
            }
        }
    }
}
