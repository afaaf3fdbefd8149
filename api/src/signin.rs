//! Signing in and out of the console: `POST`, `GET` and `DELETE /api/v1/session`
//! (the session store and its cookie are in `session.rs`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use portwatch_projections::{Decision, DecisionKind, Role};
use serde::{Deserialize, Serialize};

use crate::auth::{identify, identity_of_token, live_session};
use crate::error::{ApiError, ErrorBody};
use crate::session::{cookie_of, digest, set_cookie, LIFETIME};
use crate::ApiContext;

/// The body of `POST /api/v1/session`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    /// An API token (`pwt_<id>_<secret>`).
    token: String,
}

/// A console session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SessionView {
    /// Who is signed in.
    user: String,
    /// Their role now.
    role: Role,
    /// The token to send as `X-CSRF-Token` with every change.
    csrf: String,
}

/// Sign in with an API token: opens a session and sets its cookie.
#[utoipa::path(post, operation_id = "sign_in", path = "/api/v1/session", tag = "users", request_body = Login, security(()),
    responses(
        (status = 200, description = "Signed in; the cookie is set.", body = SessionView),
        (status = 400, description = "The body is wrong; the message names the field.", body = ErrorBody),
        (status = 401, description = "Not a valid token.", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address or for this token; see Retry-After.", body = ErrorBody),
))]
pub(crate) async fn login(
    State(ctx): State<ApiContext>,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))?;
    let who = match identify(&ctx, body.token.trim(), client.map(|c| c.0 .0.ip())).await {
        Ok(who) => who,
        Err(refused) => return Ok(refused.into_response()),
    };
    let token_id = who.token.clone().unwrap_or_default();
    let (cookie, csrf) = ctx.auth.sessions.open(&token_id);
    tracing::info!(user = %who.user, token = %token_id, "console session opened");
    let mut response = Json(SessionView {
        user: who.user,
        role: who.role,
        csrf,
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&cookie, LIFETIME.as_secs(), ctx.auth.secure_cookies),
    );
    Ok(response)
}

/// The session of the cookie: who, their role now, and the CSRF token.
#[utoipa::path(get, operation_id = "current_session", path = "/api/v1/session", tag = "users", security(()),
    responses(
        (status = 200, description = "Signed in.", body = SessionView),
        (status = 401, description = "No session (none, ended, or its token revoked).", body = ErrorBody),
))]
pub(crate) async fn current(State(ctx): State<ApiContext>, req: Request) -> Response {
    let none = || {
        (
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody {
                error: "not signed in".into(),
            }),
        )
            .into_response()
    };
    let Some(cookie) = cookie_of(req.headers()) else {
        return none();
    };
    let Some(session) = live_session(&ctx, &cookie) else {
        return none();
    };
    match identity_of_token(&ctx, &session.token_id) {
        Some(who) => Json(SessionView {
            user: who.user,
            role: who.role,
            csrf: session.csrf,
        })
        .into_response(),
        None => none(),
    }
}

/// Sign out: ends the session (at every instance of the API: the sign-out is
/// journalled) and clears its cookie.
#[utoipa::path(delete, operation_id = "sign_out", path = "/api/v1/session", tag = "users", security(()),
    responses(
        (status = 204, description = "Signed out (or was not signed in)."),
        (status = 503, description = "The sign-out could not be journalled; the session still works. Try again.", body = ErrorBody),
))]
pub(crate) async fn logout(State(ctx): State<ApiContext>, headers: HeaderMap) -> Response {
    let session = cookie_of(&headers).and_then(|cookie| Some((live_session(&ctx, &cookie)?, cookie)));
    if let Some((session, cookie)) = session {
        let by =
            identity_of_token(&ctx, &session.token_id).map_or_else(|| "unknown".to_string(), |who| who.user);
        let mut decision = Decision::new(
            Utc::now(),
            &by,
            DecisionKind::SessionClosed {
                session: digest(&cookie),
                until: session.expires,
            },
        );
        decision.token = Some(session.token_id.clone());
        if let Err(e) = ctx.ledger.record(vec![decision]).await {
            tracing::warn!(error = %e, "cannot journal a sign-out");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(ErrorBody {
                    error: "the sign-out could not be recorded; the session still works; try again".into(),
                }),
            )
                .into_response();
        }
        tracing::info!(user = %by, token = %session.token_id, "console session closed");
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, ctx.auth.secure_cookies));
    response
}
