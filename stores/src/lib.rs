//! Stores: where projected state lives and where the API reads it.
//!
//! `probes → event log → projections → **stores** → alerts / API / dashboards`
//!
//! Two stores keep one contract. The embedded store ([`EmbeddedStore`], SQLite)
//! commits the changed rows and the log offset that produced them in one
//! transaction; the ClickHouse store ([`ClickHouseStore`]) writes versioned rows and
//! checkpoints. Both answer the same queries ([`query`]): filters and key-based
//! pages evaluated in SQL. Readers go through one trait, [`ReadModel`]; writers
//! through [`StateSink`].
//!
//! Each row is kept whole as JSON next to the few columns queries filter on, so what
//! the fold produced is what the store returns, bit for bit.

mod batch;
mod clickhouse;
mod embedded;
pub mod failpoint;
pub mod query;
pub mod read;
mod sink;

pub use batch::{Batch, Versioned};
pub use clickhouse::{
    latest_schema_version, statements, Checkpoint, ClickHouseError, ClickHouseSettings, ClickHouseStore,
    JobRow, MigrateReport, ObservationRow, ProbeNodeRow, TaskJobCounts, TaskRunRows,
    MIGRATIONS as CLICKHOUSE_MIGRATIONS,
};
pub use embedded::{EmbeddedStore, Rows, StoreError, StoredJob, StoredTaskRuns, STORE_SCHEMA_VERSION};
pub use query::{AlertQuery, EpisodeQuery, HostQuery, IpRange, Page, PageRequest, PortQuery, MAX_PAGE};
pub use read::{
    EventCursor, Health, JobView, NodeView, ReadError, ReadFuture, ReadModel, StoredEvent, TaskRuns,
};
pub use sink::{ClickHouseSink, EmbeddedSink, Loaded, SinkError, StateSink};
