//! The event log: the single source of truth between probes and projections.
//!
//! `probes → **event log** → projections → stores → alerts / API / dashboards`
//!
//! [`EventLog`] is the one abstraction; engines sit behind it. The embedded engine
//! ([`EmbeddedLog`], SQLite in WAL mode) serves the all-in-one deployment; the Kafka
//! engine of the scale-out deployment implements the same trait. The model is Kafka's:
//! events are keyed by host address, a key always maps to the same partition (so one
//! host's events stay in order), and each partition is an append-only sequence of
//! offsets that readers track themselves.
//!
//! The trait is synchronous on purpose: SQLite and rdkafka's base clients are
//! blocking APIs, and async callers wrap calls in `spawn_blocking`.

mod embedded;
pub mod journal;
pub mod kafka;
pub mod reader;
pub mod spool;

pub use embedded::EmbeddedLog;
pub use journal::{Journal, JournalRecord};
pub use kafka::{
    Acks, Delivery, GroupReader, KafkaJournal, KafkaLog, KafkaSettings, Lease, Mechanism, Protocol, Refusal,
    Sasl, Security, TopicConsumer, TopicProducer, Topics,
};
pub use reader::{EmbeddedReader, LogRecord, PartitionedReader, Polled};
pub use spool::{SpoolLog, SpoolSettings, SpoolStats};

use portwatch_events::{DecodeError, Event};

/// Position of a record within its partition. Engines choose where offsets start;
/// readers rely only on offsets strictly increasing within a partition.
pub type Offset = u64;

/// One stored event and where it sits.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition the record lives in.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: Offset,
    /// The decoded event, or why it could not be decoded. A record that does not
    /// decode is still a record: readers skip it (and report it) and move on, so one
    /// bad event never blocks a partition.
    pub event: Result<Event, DecodeError>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Events newly written.
    pub appended: usize,
    /// Events skipped because an event with the same id was already in the log
    /// (a retried append must not duplicate anything).
    pub duplicates: usize,
}

/// Errors of the event log: infrastructure faults, never observation outcomes.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The embedded database failed.
    #[error("event log database error at {path}: {source}")]
    Sqlite {
        /// Path of the database file.
        path: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The log's directory could not be created.
    #[error("cannot create event log directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Kafka client or broker failed.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The brokers turned this client away (credentials, trust, protocol): the
    /// settings must change, waiting does not help.
    #[error("kafka at {brokers} refused this client: {why}")]
    Refused {
        /// `bootstrap.servers`.
        brokers: String,
        /// Which refusal.
        why: kafka::Refusal,
    },
    /// The brokers' ACLs do not let this client's user use a topic.
    #[error("kafka topic {topic}: this client's user may not use it (its ACLs do not allow it; does the role run with its own credentials?)")]
    NotAuthorized {
        /// Topic name.
        topic: String,
    },
    /// The log no longer holds records this reader has not folded yet: they were
    /// deleted or expired. Going on would fold a state without them.
    #[error("kafka topic {topic} starts at offset {start}, but this reader has folded it only up to offset {next} (records {next}..{start} are gone: deleted or expired); refusing to go on without them")]
    Gap {
        /// Topic.
        topic: String,
        /// The next offset this reader needs.
        next: u64,
        /// The first offset the log still holds.
        start: u64,
    },
    /// A topic does not exist.
    #[error("kafka topic {topic} does not exist (run `portwatch migrate` or start a control plane, which create it)")]
    NoSuchTopic {
        /// Topic name.
        topic: String,
    },
    /// The local spool is full: the event was not recorded.
    #[error("spool {path} is full ({bytes} bytes >= limit {limit}); {refused} events refused so far")]
    SpoolFull {
        /// Spool file.
        path: String,
        /// Bytes held.
        bytes: u64,
        /// Limit.
        limit: u64,
        /// Events refused since start.
        refused: u64,
    },
    /// A partition that does not exist was named.
    #[error("partition {partition} does not exist (the log has {partitions})")]
    NoSuchPartition {
        /// The partition asked for.
        partition: u32,
        /// How many there are.
        partitions: u32,
    },
}

impl LogError {
    /// Whether retrying the same call later may succeed (busy database, broker down).
    pub fn is_retryable(&self) -> bool {
        match self {
            LogError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            LogError::Io { .. } | LogError::Kafka { .. } => true,
            LogError::NoSuchPartition { .. }
            | LogError::NoSuchTopic { .. }
            | LogError::SpoolFull { .. }
            | LogError::Refused { .. }
            | LogError::NotAuthorized { .. }
            | LogError::Gap { .. } => false,
        }
    }
}

/// An append-only, partitioned, replayable log of observation events.
pub trait EventLog: Send + Sync {
    /// Number of partitions.
    fn partitions(&self) -> u32;

    /// Append events atomically (all or none), in order. Events whose id is already in
    /// the log are skipped, so retrying a failed or unacknowledged append is safe.
    fn append(&self, events: &[Event]) -> Result<AppendReceipt, LogError>;

    /// Up to `max` records of `partition` with offset `>= from`, in offset order.
    fn read(&self, partition: u32, from: Offset, max: usize) -> Result<Vec<Record>, LogError>;

    /// The offset the next appended record of `partition` will get at the earliest:
    /// `end_offset - next offset a reader wants` is its lag.
    fn end_offset(&self, partition: u32) -> Result<Offset, LogError>;
}
