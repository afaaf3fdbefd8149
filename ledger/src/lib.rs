//! The ledger: the decisions' one handle.
//!
//! `probes → event log → projections → stores → alerts / API`, and beside them the
//! **journal of decisions**: users, tokens, approvals, blocks, cadences and what was
//! notified. Observations can be replayed; decisions cannot be made again without
//! effects outside portwatch, so each is journalled before it takes effect and
//! everything that needs them folds the journal (`portwatch_projections::Ledger`). The
//! records themselves are typed in `portwatch_events::decision`.
//!
//! Whoever could write that journal would be admin, so only portwatch may: every
//! record is sealed with an HMAC-SHA256 over its canonical JSON, keyed with a secret
//! only portwatch's own processes hold (`[ledger] key_file`, created 0600 on first
//! start). [`Sealed`] wraps a deployment's journal: it seals what is appended, and
//! hands readers a record whose MAC fails as an empty body, so that it never takes
//! effect; such records are counted (`portwatch_ledger_rejected_total`) and logged
//! loudly. A [`Handle`] (the journal, the state folded from it, the offset read to)
//! is how the API, the notifier, the block controller, the scheduler, the reporter
//! and the shell record and fold decisions; [`tokens`] issues users' tokens and
//! [`audit`] reads who decided what.

pub mod audit;
mod handle;
mod seal;
pub mod tokens;

use std::path::PathBuf;

use portwatch_ingest::LogError;

pub use handle::Handle;
pub use seal::{open, seal, BadKey, Key, Rejected, Sealed};

/// What went wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The key file cannot be read or made.
    #[error("ledger.key_file {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The journal did not take or give records (retryable).
    #[error("the journal: {0}")]
    Journal(#[from] LogError),
    /// A record cannot be encoded (a bug).
    #[error("a decision cannot be sealed: {0}")]
    Encode(String),
}
