//! The journal: decisions, beside the observations.
//!
//! Observations can be replayed into the same state any number of times; decisions
//! (a notification decided, a delivery attempted, a token issued) cannot be made
//! again without effects outside portwatch. They are journalled here before they take
//! effect, and everything that needs them folds the journal. Records are opaque JSON
//! with a unique id; the embedded engine keeps the first record of an id, Kafka keeps
//! every copy and readers keep the first (the ledger folds by id).
//!
//! One partition, one global order: decisions are few next to observations.

use crate::{LogError, Offset};

/// One journalled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// Its position.
    pub offset: Offset,
    /// Its JSON.
    pub body: String,
}

/// An append-only journal of decision records.
pub trait Journal: Send + Sync {
    /// Append `(id, json)` records in order, durably, before returning. Records whose
    /// id is already journalled may be skipped.
    fn append_decisions(&self, records: &[(String, String)]) -> Result<(), LogError>;

    /// Up to `max` records with offset `>= from`, in order.
    fn read_decisions(&self, from: Offset, max: usize) -> Result<Vec<JournalRecord>, LogError>;
}
