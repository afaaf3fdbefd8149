//! The audit (admin): every decision on record, newest first, with who made it, the
//! token they used, who issued that token and where the request came from; refused
//! attempts too, with the rule that refused them. Both deployments fold the same
//! journal, so both answer from the same ledger.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use portwatch_projections::{AuditEntry, Ledger};
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::params::Params;
use crate::routes::paged;
use crate::ApiContext;

/// Entries per page when `limit` is not given.
const DEFAULT_AUDIT: usize = 100;
/// Most entries in one page.
const MAX_AUDIT: usize = 1000;

/// Query parameters of `GET /api/v1/audit`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AuditParams {
    /// Only decisions made by this user (or system name: `controller`, `notifier`, ...).
    user: Option<String>,
    /// Only decisions of this kind (`approval_granted`, `refused`, `token_issued`, ...).
    kind: Option<String>,
    /// Only decisions made at or after this time (RFC 3339), or within this long
    /// before now (`24h`, `7d`).
    since: Option<String>,
    /// Entries per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

/// What an audit read asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AuditQuery {
    /// Only this user's decisions.
    pub user: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only at or after this time.
    pub since: Option<portwatch_events::Timestamp>,
    /// Only entries before this place in the journal (the cursor).
    pub before: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// `since`: an RFC 3339 time, or a duration back from `now`.
pub fn parse_since(v: &str, now: portwatch_events::Timestamp) -> Result<portwatch_events::Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let back = humantime::parse_duration(v)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .ok_or_else(|| format!("since: `{v}` is neither an RFC 3339 time nor a duration such as 24h"))?;
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

/// Every decision on record, newest first: who (user, token, the token's issuer,
/// address), what, about what; refused attempts with their rule.
#[utoipa::path(get, path = "/api/v1/audit", tag = "users", params(AuditParams), responses(
    (status = 200, description = "Decisions, newest first.", body = [AuditEntry], headers(("x-next-cursor" = String, description = "Cursor of the next page, when there is one."))),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
))]
pub(crate) async fn list(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<AuditParams>(q)?;
    let before = p
        .cursor()?
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("cursor: `{c}` is not a cursor this API gave out"))
            })
        })
        .transpose()?;
    let query = AuditQuery {
        user: p.text("user").map(str::to_string),
        kind: p.text("kind").map(str::to_string),
        since: p
            .text("since")
            .map(|v| parse_since(v, chrono::Utc::now()))
            .transpose()
            .map_err(ApiError::bad_request)?,
        before,
        limit: p.limit_within(DEFAULT_AUDIT, MAX_AUDIT)?,
    };
    let (items, next) = {
        let state = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
        page(state.ledger(), &query)
    };
    Ok(paged(items, next))
}
