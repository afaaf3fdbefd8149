//! Sealing: an HMAC-SHA256 over each decision's canonical JSON, keyed with a secret
//! only portwatch's own processes hold.

use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use portwatch_events::decision::Decision;
use portwatch_ingest::{Journal, JournalRecord, LogError, Offset};
use rand::RngCore;
use sha2::Sha256;

use crate::LedgerError;

type HmacSha256 = Hmac<Sha256>;

/// Why a key file's text is not a key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadKey {
    /// It is not hex.
    #[error("not hex: {0}")]
    NotHex(#[from] hex::FromHexError),
    /// It is not 32 bytes long.
    #[error("{0} bytes, expected 32")]
    Length(usize),
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
    pub fn from_hex(text: &str) -> Result<Key, BadKey> {
        let bytes = hex::decode(text.trim())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| BadKey::Length(b.len()))?;
        Ok(Key(bytes))
    }

    /// The key in `path`, made (32 random bytes, mode 0600) if there is none yet.
    pub fn load_or_create(path: &Path) -> Result<Key, LedgerError> {
        let fail = |reason: String| LedgerError::Key {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Key::from_hex(&text).map_err(|e| fail(e.to_string())),
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
                Key::from_hex(&text).map_err(|e| fail(e.to_string()))
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// A key of its own for `purpose` (HMAC of the purpose under this key): the
    /// console signs its session cookies with one, so that every process holding
    /// the ledger's key accepts them and nothing signed for one use passes for
    /// another.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"portwatch key for: ");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use portwatch_events::decision::{DecisionKind, Role};

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
