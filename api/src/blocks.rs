//! Blocks: propose (operator, for an open exposure), confirm (approver, never the
//! proposer), roll back (operator), list (viewer).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::Utc;
use portwatch_events::Proto;
use portwatch_projections::blocks::{Block, BlockState};
use portwatch_projections::bounds::BlockRefusal;
use portwatch_projections::BlockRequest;
use portwatch_projections::{DecisionKind, PortState};
use portwatch_stores::{PageRequest, PortQuery};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{record, refuse, ApiContext};

/// The body of `POST /api/v1/blocks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    /// Host.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// `tcp` (default) or `udp`.
    pub proto: Option<String>,
    /// Why.
    pub reason: String,
    /// How long, once applied: `1h`, `30m`.
    pub duration: String,
}

/// A block as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlockView {
    /// Its state.
    pub state: BlockState,
    /// Everything else.
    #[serde(flatten)]
    pub block: Block,
}

fn view(b: &Block) -> BlockView {
    BlockView {
        state: b.state(),
        block: b.clone(),
    }
}

fn find(ctx: &ApiContext, id: &str) -> Result<Block, ApiError> {
    let state = ctx.ledger.read();
    state
        .ledger()
        .blocks()
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no block with id `{id}`")))
}

/// Blocks, with their state.
#[utoipa::path(get, operation_id = "list_blocks", path = "/api/v1/blocks", tag = "blocks", responses(
    (status = 200, description = "By id.", body = [BlockView]),
))]
pub(crate) async fn list(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let state = ctx.ledger.read();
    Json(state.ledger().blocks().values().map(view).collect::<Vec<_>>())
}

/// Propose blocking an open exposure (operator); a second person confirms it.
#[utoipa::path(post, operation_id = "propose_block", path = "/api/v1/blocks", tag = "blocks", request_body = NewBlock, responses(
    (status = 201, description = "Proposed; waiting for a second person.", body = BlockView),
    (status = 400, description = "The body is wrong, or the address is outside the assets; the message names the field.", body = ErrorBody),
    (status = 409, description = "The port is not an open exposure, has a block already, or is protected ([control] protect, the API's own port).", body = ErrorBody),
    (status = 503, description = "The store or the journal did not answer; try again.", body = ErrorBody),
))]
pub(crate) async fn propose(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    body: Result<Json<NewBlock>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))?;
    let ip: std::net::IpAddr = body
        .ip
        .parse()
        .map_err(|_| ApiError::bad_request(format!("ip `{}`: not an address", body.ip)))?;
    let proto: Proto = match body.proto.as_deref() {
        None => Proto::Tcp,
        Some(p) => p
            .parse()
            .map_err(|e| ApiError::bad_request(format!("proto: {e}")))?,
    };
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason: say why it must be blocked".into()));
    }
    let duration = humantime::parse_duration(&body.duration)
        .map_err(|_| ApiError::bad_request(format!("duration `{}`: e.g. 1h or 30m", body.duration)))?;
    let max = std::time::Duration::from_secs(ctx.bounds.max_block_secs);
    if duration.is_zero() || duration > max {
        return Err(ApiError::bad_request(format!(
            "duration `{}`: more than zero and at most {} ([control] max_duration)",
            body.duration,
            humantime::format_duration(max)
        )));
    }
    // Inside the assets, never a protected port: before anything is looked up.
    let mut request = BlockRequest {
        block_id: String::new(),
        ip,
        proto,
        port: body.port,
        episode_id: String::new(),
        reason: body.reason,
        duration_secs: duration.as_secs(),
    };
    match ctx.bounds.block(&ctx.assets, &request) {
        Ok(()) => {}
        Err(BlockRefusal::OutOfBounds(why)) => return Err(ApiError::bad_request(why)),
        Err(BlockRefusal::Protected(why)) => return Err(ApiError::conflict(why)),
    }
    // Only an open exposure can be blocked.
    let query = PortQuery {
        ip: Some(ip),
        state: Some(PortState::Open),
        ..PortQuery::default()
    };
    let rows = ctx.read.ports(&query, &PageRequest::all()).await?.items;
    let row = rows
        .iter()
        .find(|r| r.proto == proto && r.port == body.port)
        .ok_or_else(|| ApiError::conflict(format!("{ip}:{}/{proto} is not an open exposure", body.port)))?;
    // One block per port at a time: two would share the one firewall element, and
    // ending either would lift both.
    let pending = {
        let state = ctx.ledger.read();
        state
            .ledger()
            .blocks()
            .values()
            .find(|b| {
                (b.request.ip, b.request.proto, b.request.port) == (ip, proto, body.port)
                    && b.state() != BlockState::RolledBack
            })
            .map(|b| b.request.block_id.clone())
    };
    if let Some(other) = pending {
        return Err(ApiError::conflict(format!(
            "{ip}:{}/{proto} has a block already ({other}); roll it back first",
            body.port
        )));
    }
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    request.block_id = format!("bk_{}", hex::encode(id));
    request.episode_id.clone_from(&row.episode_id);
    let id = request.block_id.clone();
    record(
        &ctx,
        vec![me
            .actor()
            .decide(Utc::now(), DecisionKind::BlockProposed(request))],
    )
    .await?;
    tracing::info!(by = %me.user, block = %id, "block proposed");
    Ok((StatusCode::CREATED, Json(view(&find(&ctx, &id)?))))
}

/// Confirm a proposed block (approver; never the proposer); the controller then
/// applies it.
#[utoipa::path(post, operation_id = "confirm_block", path = "/api/v1/blocks/{id}/confirm", tag = "blocks",
    params(("id" = String, Path, description = "The block.")),
    responses(
        (status = 200, description = "Confirmed.", body = BlockView),
        (status = 403, description = "The caller proposed it, or does not count as a second person (two-person rule).", body = ErrorBody),
        (status = 404, description = "No block with this id.", body = ErrorBody),
        (status = 409, description = "It is not waiting for confirmation.", body = ErrorBody),
        (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
pub(crate) async fn confirm(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let block = find(&ctx, &id)?;
    if block.proposed_by == me.user {
        let why = format!("{} proposed block {id}; someone else must confirm it", me.user);
        return Err(refuse(&ctx, &me, "confirm_block", &id, why).await);
    }
    let second = {
        let state = ctx.ledger.read();
        state
            .ledger()
            .second_person(&block.proposed_by, block.proposed_at, &me.actor())
    };
    if let Err(why) = second {
        return Err(refuse(&ctx, &me, "confirm_block", &id, why.to_string()).await);
    }
    if block.state() != BlockState::Proposed {
        return Err(ApiError::conflict(format!(
            "block {id} is not waiting for confirmation"
        )));
    }
    record(
        &ctx,
        vec![me
            .actor()
            .decide(Utc::now(), DecisionKind::BlockConfirmed { block_id: id.clone() })],
    )
    .await?;
    tracing::info!(by = %me.user, block = %id, "block confirmed");
    Ok(Json(view(&find(&ctx, &id)?)))
}

/// End a block before its time (operator); the controller removes its rule.
#[utoipa::path(post, operation_id = "rollback_block", path = "/api/v1/blocks/{id}/rollback", tag = "blocks",
    params(("id" = String, Path, description = "The block.")),
    responses(
        (status = 200, description = "Ending.", body = BlockView),
        (status = 404, description = "No block with this id.", body = ErrorBody),
        (status = 409, description = "It is ending already.", body = ErrorBody),
        (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
pub(crate) async fn rollback(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let block = find(&ctx, &id)?;
    if matches!(block.state(), BlockState::RollingBack | BlockState::RolledBack) {
        return Err(ApiError::conflict(format!("block {id} is ending already")));
    }
    record(
        &ctx,
        vec![me.actor().decide(
            Utc::now(),
            DecisionKind::BlockEnding {
                block_id: id.clone(),
                why: format!("rolled back by {}", me.user),
            },
        )],
    )
    .await?;
    tracing::info!(by = %me.user, block = %id, "block rolled back");
    Ok(Json(view(&find(&ctx, &id)?)))
}
