//! The audit: every decision on record, newest first, with who made it, the token
//! they used, who issued that token and where the request came from; refused
//! attempts too, with the rule that refused them. The API, the console and
//! `portwatch audit` read it through [`page`].

use portwatch_events::Timestamp;
use portwatch_projections::{AuditEntry, Ledger};

/// A `since` that is neither a time nor a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("since: `{0}` is neither an RFC 3339 time nor a duration such as 24h")]
pub struct BadSince(pub String);

/// What an audit read asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AuditQuery {
    /// Only this user's decisions.
    pub user: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only at or after this time.
    pub since: Option<Timestamp>,
    /// Only entries before this place in the journal (the cursor).
    pub before: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// `since`: an RFC 3339 time, or a duration back from `now`.
pub fn parse_since(v: &str, now: Timestamp) -> Result<Timestamp, BadSince> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let back = humantime::parse_duration(v)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .ok_or_else(|| BadSince(v.to_string()))?;
    Ok(now - back)
}

/// One page of the audit, newest first, and the cursor of the next one.
pub fn page(ledger: &Ledger, q: &AuditQuery) -> (Vec<AuditEntry>, Option<String>) {
    let entries = ledger.audit();
    let end = q
        .before
        .map_or(entries.len(), |b| (b as usize).min(entries.len()));
    let mut out = Vec::new();
    for e in entries[..end].iter().rev() {
        if q.user.as_deref().is_some_and(|u| u != e.user)
            || q.kind.as_deref().is_some_and(|k| k != e.kind)
            || q.since.is_some_and(|s| e.at < s)
        {
            continue;
        }
        if out.len() == q.limit {
            // One more exists: the next page starts below the last one shown.
            let next = out.last().map(|last: &AuditEntry| last.seq.to_string());
            return (out, next);
        }
        out.push(e.clone());
    }
    (out, None)
}
