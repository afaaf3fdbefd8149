//! Users and tokens (admin): issue, list, revoke; and `whoami` for anyone.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::Utc;
use portwatch_events::Timestamp;
use portwatch_projections::{DecisionKind, Role};
use serde::{Deserialize, Serialize};

use portwatch_ledger::tokens::{self, Issued, TokenError};

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{record, ApiContext};

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    /// The user (created if new): 1 to 64 letters, digits, '.', '_', '-' or '@'.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    user: String,
    /// Their role: required for a new user; changes an existing user's role.
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
}

/// A token just issued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IssuedToken {
    /// Its public id.
    id: String,
    /// Whose it is.
    user: String,
    /// Their role.
    role: Role,
    /// The token, shown this once; only its hash is kept.
    token: String,
}

/// A token on record (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenView {
    /// Its public id.
    id: String,
    /// Whose it is.
    user: String,
    /// The user's role now.
    role: Option<Role>,
    /// When it was issued.
    #[schema(value_type = String, format = DateTime)]
    issued_at: Timestamp,
    /// Who issued it.
    issued_by: String,
    /// Issued by someone else for a user who existed already: it works, but counts
    /// for nobody's second confirmation.
    delegated: bool,
    /// When it was revoked, if it was.
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<Timestamp>,
}

/// `user`'s role, if they exist, and how many admins there are.
fn role_and_admins(ctx: &ApiContext, user: &str) -> (Option<Role>, usize) {
    let state = ctx.ledger.read();
    let ledger = state.ledger();
    let admins = ledger.users().values().filter(|r| **r == Role::Admin).count();
    (ledger.role(user), admins)
}

/// Why giving `user` (whose role is `current`) the role `role` is refused when
/// `admins` users are admins: it would leave nobody able to manage users through
/// the API (`portwatch token create` on the machine would be the way back).
fn last_admin_demoted(
    current: Option<Role>,
    role: Option<Role>,
    admins: usize,
    user: &str,
) -> Option<String> {
    let demoted = current == Some(Role::Admin) && role.is_some_and(|r| r != Role::Admin);
    (demoted && admins <= 1).then(|| {
        format!("`{user}` is the last admin: make someone else admin first, so that somebody can still manage users")
    })
}

/// Issue a token (admin); the user is created with the role if new, the role
/// changed if given and different. The last admin cannot be given another role.
#[utoipa::path(post, operation_id = "create_token", path = "/api/v1/tokens", tag = "users", request_body = NewToken, responses(
    (status = 201, description = "The token, shown this once; only its hash is kept.", body = IssuedToken),
    (status = 400, description = "The body is wrong; the message names the field.", body = ErrorBody),
    (status = 403, description = "The user exists and is not the caller: only they issue their own tokens.", body = ErrorBody),
    (status = 409, description = "The change would leave no admin.", body = ErrorBody),
    (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
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
    let (current, admins) = role_and_admins(&ctx, &body.user);
    if let Some(reason) = last_admin_demoted(current, role, admins, &body.user) {
        return Err(ApiError::conflict(reason));
    }
    // A token for somebody else who exists already would let an admin act as them
    // (and be their own second person): refused unless the config allows it, and
    // even then the token counts for nobody's second confirmation (the ledger marks
    // it delegated).
    if current.is_some() && body.user != me.user && !ctx.auth.admin_may_issue_for_others {
        let why = format!(
            "`{}` exists: only they issue their own tokens (PUT /api/v1/users/{} changes their role; [auth] admin_may_issue_for_others = true allows it)",
            body.user, body.user
        );
        return Err(crate::refuse(&ctx, &me, "issue_token", &body.user, why).await);
    }
    let Issued {
        decisions,
        token,
        id,
        role,
    } = tokens::issue(current, &body.user, role, &me.actor()).map_err(|e| match e {
        TokenError::Hash(_) => ApiError::unavailable(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    })?;
    record(&ctx, decisions).await?;
    tracing::info!(by = %me.user, user = %body.user, role = role.as_str(), token = %id, "token issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            id,
            user: body.user,
            role,
            token,
        }),
    ))
}

/// Every token (admin): ids, users, roles, issue and revocation times; never secrets.
#[utoipa::path(get, operation_id = "list_tokens", path = "/api/v1/tokens", tag = "users", responses(
    (status = 200, description = "By id.", body = [TokenView]),
))]
pub(crate) async fn list(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let state = ctx.ledger.read();
    let ledger = state.ledger();
    let tokens: Vec<TokenView> = ledger
        .tokens()
        .map(|t| TokenView {
            id: t.id.clone(),
            user: t.user.clone(),
            role: ledger.role(&t.user),
            issued_at: t.issued_at,
            issued_by: t.issued_by.clone(),
            delegated: t.delegated,
            revoked_at: t.revoked_at,
        })
        .collect();
    Json(tokens)
}

/// Revoke a token (admin).
#[utoipa::path(delete, operation_id = "revoke_token", path = "/api/v1/tokens/{id}", tag = "users",
    params(("id" = String, Path, description = "The token's id.")),
    responses(
        (status = 204, description = "Revoked (or already revoked)."),
        (status = 404, description = "No token with this id.", body = ErrorBody),
        (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
pub(crate) async fn revoke(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let known = {
        let state = ctx.ledger.read();
        state.ledger().token(&id).map(|t| t.revoked_at.is_some())
    };
    match known {
        None => Err(ApiError::not_found(format!("no token with id `{id}`"))),
        Some(true) => Ok(StatusCode::NO_CONTENT),
        Some(false) => {
            record(
                &ctx,
                vec![me
                    .actor()
                    .decide(Utc::now(), DecisionKind::TokenRevoked { token_id: id.clone() })],
            )
            .await?;
            tracing::info!(by = %me.user, token = %id, "token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// The caller: user, role and token id.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "users", responses(
    (status = 200, description = "Who the token belongs to.", body = Identity),
))]
pub(crate) async fn whoami(Extension(me): Extension<Identity>) -> impl IntoResponse {
    Json(me)
}

/// The body of `PUT /api/v1/users/{user}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRole {
    /// Their role from now on.
    #[schema(value_type = Role)]
    role: String,
}

/// A user on record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserView {
    /// The user's name.
    user: String,
    /// Their role.
    role: Role,
    /// Who created them.
    created_by: String,
    /// Who gave them this role.
    role_by: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    role_at: Timestamp,
}

/// Change an existing user's role (admin); no token is issued. The last admin
/// cannot be given another role.
#[utoipa::path(put, operation_id = "set_user_role", path = "/api/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "The user.")),
    request_body = NewRole,
    responses(
        (status = 200, description = "The user now.", body = UserView),
        (status = 400, description = "The body is wrong; the message names the field.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        (status = 409, description = "The change would leave no admin.", body = ErrorBody),
        (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
pub(crate) async fn set_role(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(user): Path<String>,
    body: Result<Json<NewRole>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))?;
    let role = body
        .role
        .parse::<Role>()
        .map_err(|e| ApiError::bad_request(format!("role: {e}")))?;
    let (current, admins) = role_and_admins(&ctx, &user);
    let Some(current) = current else {
        return Err(ApiError::not_found(format!("no user `{user}`")));
    };
    if let Some(reason) = last_admin_demoted(Some(current), Some(role), admins, &user) {
        return Err(ApiError::conflict(reason));
    }
    if current != role {
        record(
            &ctx,
            vec![me.actor().decide(
                Utc::now(),
                DecisionKind::UserSet {
                    user: user.clone(),
                    role,
                },
            )],
        )
        .await?;
        tracing::info!(by = %me.user, user = %user, role = role.as_str(), "role changed");
    }
    let state = ctx.ledger.read();
    let record = state
        .ledger()
        .user_record(&user)
        .ok_or_else(|| ApiError::not_found(format!("no user `{user}`")))?;
    Ok(Json(UserView {
        user: user.clone(),
        role: record.role,
        created_by: record.created_by.clone(),
        role_by: record.role_by.clone(),
        role_at: record.role_at,
    }))
}
