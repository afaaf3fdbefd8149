//! The handle every role decides and reads through: the journal, what it folds to,
//! and how far it has been read.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use portwatch_events::decision::Decision;
use portwatch_ingest::{Journal, LogError};
use portwatch_projections::Notifier;

/// The ledger of one process: its journal (sealed, see [`crate::Sealed`]), the
/// state folded from it, and the offset it has been read to. Cheap to clone; the
/// clones share all three, so that a decision recorded by the API is seen by the
/// notifier and the block controller of the same process at once, and one reader
/// moves the offset for all.
#[derive(Clone)]
pub struct Handle {
    journal: Arc<dyn Journal>,
    state: Arc<RwLock<Notifier>>,
    read_to: Arc<tokio::sync::Mutex<u64>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// The ledger over `journal`, folding into `state` (nothing read yet).
    pub fn new(journal: Arc<dyn Journal>, state: Notifier) -> Handle {
        Handle {
            journal,
            state: Arc::new(RwLock::new(state)),
            read_to: Arc::new(tokio::sync::Mutex::new(0)),
        }
    }

    /// The folded state, to read.
    pub fn read(&self) -> RwLockReadGuard<'_, Notifier> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The folded state, for the notifier's policy passes, which derive decisions
    /// from it (and record them through [`Handle::record`]).
    pub fn write(&self) -> RwLockWriteGuard<'_, Notifier> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Journal `decisions` (durably, off the async threads), then fold them: a
    /// decision counts once it is journalled, never before.
    pub async fn record(&self, decisions: Vec<Decision>) -> Result<(), LogError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let records: Vec<(String, String)> = decisions.iter().map(|d| (d.id.clone(), d.to_json())).collect();
        let j = self.journal.clone();
        tokio::task::spawn_blocking(move || j.append_decisions(&records))
            .await
            .unwrap_or_else(|e| Err(joined(e)))?;
        let mut state = self.write();
        for d in &decisions {
            state.apply(d);
        }
        Ok(())
    }

    /// Fold every record the journal holds beyond what this handle has read; the
    /// offset after the last one. Records this build cannot decode, and records
    /// the seal refused, are skipped. Records are folded by id, so reading one
    /// again (it was recorded here too) is harmless.
    pub async fn catch_up(&self) -> Result<u64, LogError> {
        let mut from = self.read_to.lock().await;
        loop {
            let (j, at) = (self.journal.clone(), *from);
            let records = tokio::task::spawn_blocking(move || j.read_decisions(at, 1000))
                .await
                .unwrap_or_else(|e| Err(joined(e)))?;
            if records.is_empty() {
                return Ok(*from);
            }
            let mut state = self.write();
            for r in &records {
                *from = r.offset + 1;
                if r.body.is_empty() {
                    continue;
                }
                match Decision::from_json(&r.body) {
                    Ok(d) => {
                        state.apply(&d);
                    }
                    Err(e) => tracing::warn!(offset = r.offset, error = %e, "journal record skipped"),
                }
            }
        }
    }
}

fn joined(e: tokio::task::JoinError) -> LogError {
    LogError::Io {
        path: "journal".into(),
        source: std::io::Error::other(e.to_string()),
    }
}
