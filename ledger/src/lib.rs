//! The ledger: the decisions' one handle.
//!
//! `probes → event log → projections → stores → alerts / API`, and beside them the
//! **journal of decisions**: users, tokens, approvals, blocks, cadences and what was
//! notified. Observations can be replayed; decisions cannot be made again without
//! effects outside portwatch, so each is journalled before it takes effect and
//! everything that needs them folds the journal (`portwatch_projections::Ledger`).
//!
//! Whoever could write that journal would be admin, so only portwatch may: every
//! record is sealed with an HMAC-SHA256 over its canonical JSON, keyed with a secret
//! only portwatch's own processes hold (`[ledger] key_file`, created 0600 on first
//! start). [`Sealed`] wraps a deployment's journal: it seals what is appended, and
//! hands readers a record whose MAC fails as an empty body, so that it never takes
//! effect; such records are counted (`portwatch_ledger_rejected_total`) and logged
//! loudly. [`record`] and [`catch_up`] are how the API, the notifier, the block
//! controller, the scheduler and the shell write and fold decisions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use portwatch_ingest::{Journal, JournalRecord, LogError, Offset};
use portwatch_projections::{Decision, Notifier};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

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

/// The ledger's secret: 32 bytes.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

impl Key {
    /// A key from its hex form (64 hex digits).
    pub fn from_hex(text: &str) -> Result<Key, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("{} bytes, expected 32", b.len()))?;
        Ok(Key(bytes))
    }

    /// The key in `path`, made (32 random bytes, mode 0600) if there is none yet.
    pub fn load_or_create(path: &Path) -> Result<Key, LedgerError> {
        let fail = |reason: String| LedgerError::Key {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Key::from_hex(&text).map_err(fail),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e.to_string())),
            Err(_) => {}
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = Key(bytes);
        // create_new: two processes starting at once keep the first one's key.
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                writeln!(file, "{}", hex::encode(key.0)).map_err(|e| fail(e.to_string()))?;
                file.sync_all().map_err(|e| fail(e.to_string()))?;
                tracing::info!(path = %path.display(), "ledger key created (mode 0600)");
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
                Key::from_hex(&text).map_err(fail)
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    fn mac(&self, canonical: &str) -> String {
        // HMAC takes keys of any length: its "invalid length" error cannot happen.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(canonical.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// `d` as journalled: its canonical JSON (without a MAC) with its MAC.
pub fn seal(key: &Key, d: &Decision) -> String {
    let mut d = d.clone();
    d.mac = None;
    let mac = key.mac(&d.to_json());
    d.mac = Some(mac);
    d.to_json()
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// It does not decode.
    #[error("does not decode: {0}")]
    Undecodable(String),
    /// It carries no MAC.
    #[error("carries no MAC")]
    Unsealed,
    /// Its MAC is not the key's for its content.
    #[error("its MAC does not match its content")]
    Forged,
}

/// The decision in `body`, if its MAC holds.
pub fn open(key: &Key, body: &str) -> Result<Decision, Rejected> {
    let mut d = Decision::from_json(body).map_err(|e| Rejected::Undecodable(e.to_string()))?;
    let Some(given) = d.mac.take() else {
        return Err(Rejected::Unsealed);
    };
    let want = key.mac(&d.to_json());
    // Constant time: the comparison says nothing about how much of a guess was right.
    let same = want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(d)
    } else {
        Err(Rejected::Forged)
    }
}

/// A journal only portwatch writes: appends are sealed, reads authenticated. A
/// record that fails is handed on with an empty body (it never takes effect, and
/// readers move past it), counted and logged.
pub struct Sealed {
    inner: Arc<dyn Journal>,
    key: Key,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").finish_non_exhaustive()
    }
}

impl Sealed {
    /// `inner`, sealed with `key`.
    pub fn wrap(inner: Arc<dyn Journal>, key: Key) -> Arc<dyn Journal> {
        Arc::new(Sealed { inner, key })
    }
}

impl Journal for Sealed {
    fn append_decisions(&self, records: &[(String, String)]) -> Result<(), LogError> {
        let mut sealed = Vec::with_capacity(records.len());
        for (id, body) in records {
            let d = Decision::from_json(body).map_err(|e| LogError::Io {
                path: "journal".into(),
                source: std::io::Error::other(format!("decision {id} cannot be sealed: {e}")),
            })?;
            sealed.push((id.clone(), seal(&self.key, &d)));
        }
        self.inner.append_decisions(&sealed)
    }

    fn read_decisions(&self, from: Offset, max: usize) -> Result<Vec<JournalRecord>, LogError> {
        let mut records = self.inner.read_decisions(from, max)?;
        for r in &mut records {
            if let Err(why) = open(&self.key, &r.body) {
                metrics::counter!("portwatch_ledger_rejected_total").increment(1);
                let id = Decision::from_json(&r.body).map(|d| d.id).unwrap_or_default();
                tracing::error!(
                    offset = r.offset, id = %id, why = %why,
                    "REJECTED a journal record that portwatch did not write: it takes no effect"
                );
                r.body.clear();
            }
        }
        Ok(records)
    }
}

/// Journal `decisions` (durably, off the async threads), then fold them into
/// `state`: a decision counts once it is journalled, never before.
pub async fn record(
    journal: &Arc<dyn Journal>,
    state: &RwLock<Notifier>,
    decisions: Vec<Decision>,
) -> Result<(), LogError> {
    if decisions.is_empty() {
        return Ok(());
    }
    let records: Vec<(String, String)> = decisions.iter().map(|d| (d.id.clone(), d.to_json())).collect();
    let j = journal.clone();
    tokio::task::spawn_blocking(move || j.append_decisions(&records))
        .await
        .unwrap_or_else(|e| {
            Err(LogError::Io {
                path: "journal".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })?;
    let mut state = state.write().unwrap_or_else(|p| p.into_inner());
    for d in &decisions {
        state.apply(d);
    }
    Ok(())
}

/// Fold every journal record from offset `from` on into `state`; the offset after
/// the last one. Records this build cannot decode, and records [`Sealed`] refused,
/// are skipped.
pub async fn catch_up(
    journal: &Arc<dyn Journal>,
    state: &RwLock<Notifier>,
    mut from: u64,
) -> Result<u64, LogError> {
    loop {
        let j = journal.clone();
        let records = tokio::task::spawn_blocking(move || j.read_decisions(from, 1000))
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))?;
        if records.is_empty() {
            return Ok(from);
        }
        let mut state = state.write().unwrap_or_else(|p| p.into_inner());
        for r in &records {
            from = r.offset + 1;
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use portwatch_projections::{DecisionKind, Role};

    use super::*;

    fn decision() -> Decision {
        let at = chrono::Utc.timestamp_opt(1_800_000_000, 0).single().expect("ts");
        Decision::new(
            at,
            "cli:root",
            DecisionKind::UserSet {
                user: "mallory".into(),
                role: Role::Admin,
            },
        )
    }

    #[test]
    fn only_a_record_sealed_with_the_key_opens() {
        let key = Key::from_hex(&"ab".repeat(32)).expect("key");
        let other = Key::from_hex(&"cd".repeat(32)).expect("key");
        let d = decision();
        let body = seal(&key, &d);
        assert_eq!(open(&key, &body), Ok(d.clone()));
        assert_eq!(open(&other, &body), Err(Rejected::Forged), "another key");
        assert_eq!(open(&key, &d.to_json()), Err(Rejected::Unsealed));
        // The content changed under a valid MAC.
        let tampered = body.replace("\"role\":\"admin\"", "\"role\":\"viewer\"");
        assert_ne!(tampered, body);
        assert_eq!(open(&key, &tampered), Err(Rejected::Forged));
        assert!(matches!(open(&key, "{"), Err(Rejected::Undecodable(_))));
    }

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub/ledger.key");
        let first = Key::load_or_create(&path).expect("made");
        let again = Key::load_or_create(&path).expect("read");
        assert_eq!(first.0, again.0);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            !format!("{first:?}").contains(&hex::encode(first.0)),
            "Debug hides it"
        );
        std::fs::write(&path, "nothex").expect("spoil");
        let err = Key::load_or_create(&path).expect_err("spoiled").to_string();
        assert!(
            err.contains("ledger.key_file") && err.contains("not hex"),
            "{err}"
        );
    }
}
