//! The audit (admin): every decision on record, newest first, with who made it, the
//! token they used, who issued that token and where the request came from; refused
//! attempts too, with the rule that refused them. Both deployments fold the same
//! journal, so both answer from the same ledger.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use portwatch_ledger::audit::{page, parse_since, AuditQuery};
use portwatch_projections::AuditEntry;
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
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        before,
        limit: p.limit_within(DEFAULT_AUDIT, MAX_AUDIT)?,
    };
    let (items, next) = page(ctx.ledger.read().ledger(), &query);
    Ok(paged(items, next))
}
