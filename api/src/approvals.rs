//! Approvals: file (operator), list (viewer), approve or reject (approver, never the
//! requester). Granting binds the approval to what each open port in scope serves
//! right now, read from the deployment's store.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::Utc;
use portwatch_events::{PortSet, Proto};
use portwatch_projections::approvals::{parse_target, Approval, ApprovalState};
use portwatch_projections::{Actor, ApprovalRequest, Bound, Decision, DecisionKind, Fingerprint, PortState};
use portwatch_stores::{IpRange, PageRequest, PortQuery};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{record, refuse, ApiContext};

/// Longest an approval may run: a year, so every approval is looked at again.
pub const MAX_VALIDITY: chrono::Duration = chrono::Duration::days(366);

/// The body of `POST /api/v1/approvals`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApproval {
    /// An address or a CIDR network.
    pub target: String,
    /// Ports: `8080`, `8000-8100`, `80,443`.
    pub ports: String,
    /// `tcp` (default) or `udp`.
    pub proto: Option<String>,
    /// The service expected (`http`, `ssh`, ...).
    pub service: Option<String>,
    /// The business reason.
    pub reason: String,
    /// Who answers for it.
    pub owner: String,
    /// RFC 3339 time, or a duration from now (`30d`, `12h`).
    pub expires: String,
}

/// The body of approve and reject.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// A note for the record.
    pub note: Option<String>,
}

/// An approval as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    /// Its state now.
    pub state: ApprovalState,
    /// Everything else.
    #[serde(flatten)]
    pub approval: Approval,
}

/// Check a request; the decision that files it.
pub fn file(body: NewApproval, by: &Actor, now: chrono::DateTime<Utc>) -> Result<Decision, String> {
    let net = parse_target(&body.target)?;
    let ports = PortSet::parse(&body.ports).map_err(|e| format!("ports: {e}"))?;
    let proto = match body.proto.as_deref() {
        None => Proto::Tcp,
        Some(p) => p.parse().map_err(|e| format!("proto: {e}"))?,
    };
    if body.reason.trim().is_empty() {
        return Err("reason: say why the business needs this exposure".into());
    }
    if body.owner.trim().is_empty() {
        return Err("owner: name who answers for it".into());
    }
    let expires_at = match chrono::DateTime::parse_from_rfc3339(&body.expires) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let d = humantime::parse_duration(&body.expires).map_err(|_| {
                format!(
                    "expires `{}`: an RFC 3339 time or a duration such as 30d",
                    body.expires
                )
            })?;
            now + chrono::Duration::from_std(d).map_err(|e| format!("expires: {e}"))?
        }
    };
    if expires_at <= now {
        return Err(format!("expires `{}`: must be in the future", body.expires));
    }
    if expires_at - now > MAX_VALIDITY {
        return Err(format!("expires `{}`: at most a year from now", body.expires));
    }
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    Ok(by.decide(
        now,
        DecisionKind::ApprovalRequested(ApprovalRequest {
            approval_id: format!("ap_{}", hex::encode(id)),
            net,
            ports,
            proto,
            service: body.service.filter(|s| !s.trim().is_empty()),
            reason: body.reason,
            owner: body.owner,
            expires_at,
        }),
    ))
}

fn view(a: &Approval) -> ApprovalView {
    ApprovalView {
        state: a.state(Utc::now()),
        approval: a.clone(),
    }
}

fn find(ctx: &ApiContext, id: &str) -> Result<Approval, ApiError> {
    let state = ctx.ledger.read();
    state
        .ledger()
        .approvals()
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no approval with id `{id}`")))
}

/// Approvals, with their state now.
#[utoipa::path(get, operation_id = "list_approvals", path = "/api/v1/approvals", tag = "approvals", responses(
    (status = 200, description = "By id.", body = [ApprovalView]),
))]
pub(crate) async fn list(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let state = ctx.ledger.read();
    let views: Vec<ApprovalView> = state.ledger().approvals().values().map(view).collect();
    Json(views)
}

/// File an approval request (operator): an exposure the business needs, with its
/// reason, owner and a mandatory expiry.
#[utoipa::path(post, operation_id = "request_approval", path = "/api/v1/approvals", tag = "approvals", request_body = NewApproval, responses(
    (status = 201, description = "Filed, pending.", body = ApprovalView),
    (status = 400, description = "The body is wrong, or breaks a limit (more than [approvals] max_addresses, outside the assets, service `unknown`); the message names it.", body = ErrorBody),
    (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
pub(crate) async fn create(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    body: Result<Json<NewApproval>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))?;
    let decision = file(body, &me.actor(), Utc::now()).map_err(ApiError::bad_request)?;
    let DecisionKind::ApprovalRequested(request) = &decision.what else {
        return Err(ApiError::unavailable("not a request".into()));
    };
    ctx.bounds
        .approval(&ctx.assets, request)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = request.approval_id.clone();
    record(&ctx, vec![decision]).await?;
    tracing::info!(by = %me.user, approval = %id, "approval requested");
    Ok((StatusCode::CREATED, Json(view(&find(&ctx, &id)?))))
}

/// The optional body of approve and reject: none, or a verdict (400 naming what is
/// wrong with it).
fn verdict(body: &[u8]) -> Result<Option<Verdict>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("body: {e}")))
}

/// Approve or reject: an approver, not the requester, on a pending request.
async fn decide(
    ctx: &ApiContext,
    me: &Identity,
    id: &str,
    verdict: Option<Verdict>,
    grant: bool,
) -> Result<Json<ApprovalView>, ApiError> {
    let approval = find(ctx, id)?;
    let action = if grant { "approve" } else { "reject" };
    if approval.requested_by == me.user {
        let why = format!("{} requested approval {id}; someone else must decide it", me.user);
        return Err(refuse(ctx, me, action, id, why).await);
    }
    let second = {
        let state = ctx.ledger.read();
        state
            .ledger()
            .second_person(&approval.requested_by, approval.requested_at, &me.actor())
    };
    if let Err(why) = second {
        return Err(refuse(ctx, me, action, id, why.to_string()).await);
    }
    if approval.decision.is_some() {
        return Err(ApiError::conflict(format!("approval {id} was decided already")));
    }
    if grant {
        // The limits again: the request may predate them, or have reached the
        // journal some other way.
        ctx.bounds
            .approval(&ctx.assets, &approval.request)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let note = verdict.and_then(|v| v.note);
    let what = if grant {
        // Bind it to what each open port in scope serves now.
        let net = approval.request.net;
        let query = PortQuery {
            state: Some(PortState::Open),
            within: Some(vec![IpRange {
                lo: net.network(),
                hi: net.broadcast(),
            }]),
            ..PortQuery::default()
        };
        let rows = ctx.read.ports(&query, &PageRequest::all()).await?.items;
        let bound = rows
            .iter()
            .filter(|r| approval.covers(r.ip, r.proto, r.port))
            .map(|r| Bound {
                ip: r.ip,
                proto: r.proto,
                port: r.port,
                seen: Fingerprint::from(r),
            })
            .collect();
        DecisionKind::ApprovalGranted {
            approval_id: id.to_string(),
            bound,
            note,
        }
    } else {
        DecisionKind::ApprovalRejected {
            approval_id: id.to_string(),
            note,
        }
    };
    record(ctx, vec![me.actor().decide(Utc::now(), what)]).await?;
    tracing::info!(by = %me.user, approval = %id, granted = grant, "approval decided");
    Ok(Json(view(&find(ctx, id)?)))
}

/// Grant a pending approval (approver; never the requester): binds it to what each
/// open port in scope serves now.
#[utoipa::path(post, operation_id = "approve_approval", path = "/api/v1/approvals/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "The approval.")),
    request_body(content = Option<Verdict>, description = "An optional note."),
    responses(
        (status = 200, description = "Granted.", body = ApprovalView),
        (status = 400, description = "The body is wrong; the message names the field.", body = ErrorBody),
        (status = 403, description = "The caller requested it, or does not count as a second person (two-person rule).", body = ErrorBody),
        (status = 404, description = "No approval with this id.", body = ErrorBody),
        (status = 409, description = "It was decided already.", body = ErrorBody),
        (status = 503, description = "The store or the journal did not answer; try again.", body = ErrorBody),
))]
pub(crate) async fn approve(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    decide(&ctx, &me, &id, verdict(&body)?, true).await
}

/// Reject a pending approval (approver; never the requester).
#[utoipa::path(post, operation_id = "reject_approval", path = "/api/v1/approvals/{id}/reject", tag = "approvals",
    params(("id" = String, Path, description = "The approval.")),
    request_body(content = Option<Verdict>, description = "An optional note."),
    responses(
        (status = 200, description = "Rejected.", body = ApprovalView),
        (status = 400, description = "The body is wrong; the message names the field.", body = ErrorBody),
        (status = 403, description = "The caller requested it, or does not count as a second person (two-person rule).", body = ErrorBody),
        (status = 404, description = "No approval with this id.", body = ErrorBody),
        (status = 409, description = "It was decided already.", body = ErrorBody),
        (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
pub(crate) async fn reject(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    decide(&ctx, &me, &id, verdict(&body)?, false).await
}
