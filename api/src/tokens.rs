//! Users and tokens (admin): issue, list, revoke; and `whoami` for anyone.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::Utc;
use portwatch_projections::{Decision, DecisionKind, Role, TokenIssued};
use serde::Deserialize;

use crate::auth::{new_token, Identity};
use crate::error::ApiError;
use crate::{record, ApiContext};

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    user: String,
    role: Option<String>,
}

/// Whether `name` is an acceptable user name.
pub fn check_user(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user `{name}`: 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

/// The decisions that give `user` a new token (and, if `role` is given and differs,
/// that role), by `by`; and the token to show once.
pub fn issue(
    current: Option<Role>,
    user: &str,
    role: Option<Role>,
    by: &str,
) -> Result<(Vec<Decision>, String, String, Role), String> {
    check_user(user)?;
    let role = match (current, role) {
        (_, Some(r)) => r,
        (Some(r), None) => r,
        (None, None) => return Err(format!("user `{user}` does not exist yet: give their role")),
    };
    let now = Utc::now();
    let mut decisions = Vec::new();
    if current != Some(role) {
        decisions.push(Decision::new(
            now,
            by,
            DecisionKind::UserSet {
                user: user.to_string(),
                role,
            },
        ));
    }
    let (token, id, hash) = new_token()?;
    decisions.push(Decision::new(
        now,
        by,
        DecisionKind::TokenIssued(TokenIssued {
            token_id: id.clone(),
            user: user.to_string(),
            hash,
        }),
    ));
    Ok((decisions, token, id, role))
}

pub(crate) async fn create(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))?;
    let role = body
        .role
        .as_deref()
        .map(str::parse::<Role>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("role: {e}")))?;
    let current = {
        let state = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
        state.ledger().role(&body.user)
    };
    let (decisions, token, id, role) =
        issue(current, &body.user, role, &me.user).map_err(ApiError::bad_request)?;
    record(&ctx, decisions).await?;
    tracing::info!(by = %me.user, user = %body.user, role = role.as_str(), token = %id, "token issued");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "user": body.user, "role": role, "token": token })),
    ))
}

pub(crate) async fn list(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let state = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
    let ledger = state.ledger();
    let tokens: Vec<serde_json::Value> = ledger
        .tokens()
        .map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            v["role"] = serde_json::to_value(ledger.role(&t.user)).unwrap_or_default();
            v
        })
        .collect();
    Json(tokens)
}

pub(crate) async fn revoke(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let known = {
        let state = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
        state.ledger().token(&id).map(|t| t.revoked_at.is_some())
    };
    match known {
        None => Err(ApiError::not_found(format!("no token with id `{id}`"))),
        Some(true) => Ok(StatusCode::NO_CONTENT),
        Some(false) => {
            record(
                &ctx,
                vec![Decision::new(
                    Utc::now(),
                    &me.user,
                    DecisionKind::TokenRevoked { token_id: id.clone() },
                )],
            )
            .await?;
            tracing::info!(by = %me.user, token = %id, "token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

pub(crate) async fn whoami(Extension(me): Extension<Identity>) -> impl IntoResponse {
    Json(me)
}
