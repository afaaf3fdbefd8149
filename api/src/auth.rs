//! Who is asking: API tokens (or a console session opened with one, see
//! `session.rs`) and roles.
//!
//! A token is `pwt_<id>_<secret>`: the id names it in the journal and in logs, the
//! secret is shown once and stored only as an argon2id hash. Every request but
//! `/healthz`, `/metrics` and the OpenAPI document carries one as
//! `Authorization: Bearer <token>`; reads need the viewer role (or `[auth]
//! anonymous_read`), writes the role of the route. 401 without a valid token, 403
//! with too small a role. Roles are checked here, on the server, for every route.
//!
//! Hashing is slow on purpose, so a verified token is remembered by its SHA-256
//! for the life of the process; revoking it or changing its user's role takes
//! effect at the next request all the same (the ledger is read every time).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portwatch_projections::Role;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ErrorBody;
use crate::session;
use crate::ApiContext;

/// How requests are authenticated.
#[derive(Debug)]
pub struct Auth {
    /// Reads need no token (writes always do).
    pub anonymous_read: bool,
    /// An admin may issue tokens for existing users other than themselves (such
    /// tokens count for nobody's second confirmation).
    pub admin_may_issue_for_others: bool,
    /// Session cookies carry `Secure`: the server serves HTTPS, or listens beyond
    /// loopback (then only a TLS proxy in front makes sense). Decided by how the
    /// server is set up, never by request headers.
    pub secure_cookies: bool,
    verified: Mutex<HashMap<[u8; 32], String>>,
    /// Console sessions.
    pub(crate) sessions: crate::session::Sessions,
    /// Failed authentications and the cost of verifying.
    pub(crate) throttle: crate::throttle::Throttle,
}

impl Default for Auth {
    fn default() -> Self {
        Auth::new(false)
    }
}

impl Auth {
    /// Authentication as configured.
    pub fn new(anonymous_read: bool) -> Self {
        Self {
            anonymous_read,
            admin_may_issue_for_others: false,
            secure_cookies: false,
            verified: Mutex::new(HashMap::new()),
            sessions: crate::session::Sessions::default(),
            // An unknown id is verified against the hash of a secret nobody has,
            // so that it costs what a known one does.
            throttle: crate::throttle::Throttle::new(
                portwatch_ledger::tokens::hash_secret("no token has this secret").unwrap_or_default(),
                crate::throttle::FAILURES_PER_MINUTE,
            ),
        }
    }

    /// Failed authentications allowed per client address and per token id a minute
    /// (`[auth] failures_per_minute`) before 429.
    pub fn failures_per_minute(mut self, n: u32) -> Self {
        self.throttle = self.throttle.with_failures_per_minute(n);
        self
    }

    /// Whether session cookies are `Secure` (see [`Auth::secure_cookies`]).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Sign console sessions with `key` (derived from the ledger's key, so that
    /// every API process of the deployment accepts them); without one, sessions
    /// end with the process.
    pub fn session_key(mut self, key: [u8; 32]) -> Self {
        self.sessions = crate::session::Sessions::with_key(key);
        self
    }

    /// Whether admins may issue tokens for other existing users (`[auth]
    /// admin_may_issue_for_others`).
    pub fn issuing_for_others(mut self, allowed: bool) -> Self {
        self.admin_may_issue_for_others = allowed;
        self
    }
}

/// The caller of a request that passed the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// User name (`anonymous` for an unauthenticated read).
    pub user: String,
    /// Their role now.
    pub role: Role,
    /// The token used, by id.
    pub token: Option<String>,
    /// The address the request came from (for the audit).
    #[serde(skip)]
    pub client: Option<String>,
}

impl Identity {
    /// The caller as the journal names who decided: user, token and address.
    pub fn actor(&self) -> portwatch_projections::Actor {
        portwatch_projections::Actor {
            name: self.user.clone(),
            token: self.token.clone(),
            client: self.client.clone(),
        }
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl Refused {
    fn unauthorized(message: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_string(),
            retry_after: None,
        }
    }

    fn throttled(wait: crate::throttle::RetryAfter) -> Self {
        let secs = crate::throttle::retry_after_secs(wait);
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "too many failed authentications from this address or for this token; retry in {secs} s"
            ),
            retry_after: Some(secs),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The holder of the token with id `token_id`, while it is not revoked and its user
/// has a role.
pub(crate) fn identity_of_token(ctx: &ApiContext, token_id: &str) -> Option<Identity> {
    let state = ctx.ledger.read();
    let ledger = state.ledger();
    let record = ledger.token(token_id).filter(|r| r.revoked_at.is_none())?;
    Some(Identity {
        user: record.user.clone(),
        role: ledger.role(&record.user)?,
        token: Some(record.id.clone()),
        client: None,
    })
}

/// Who `token` belongs to, if it is valid and not revoked. Attempts from `client`
/// are throttled once too many failed (429): see `throttle.rs`.
pub(crate) async fn identify(
    ctx: &ApiContext,
    token: &str,
    client: Option<std::net::IpAddr>,
) -> Result<Identity, Refused> {
    let invalid = || Refused::unauthorized("invalid or revoked token");
    let throttle = &ctx.auth.throttle;
    let Some((id, secret)) = portwatch_ledger::tokens::split(token) else {
        throttle.check(client, "malformed").map_err(Refused::throttled)?;
        throttle.failed(client, "malformed", "not a token's shape");
        return Err(invalid());
    };
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let proven = ctx
        .auth
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&digest)
        .is_some_and(|known| known == id);
    // A token this server has verified already passes without hashing, so it is
    // not held back by the throttle: whoever guesses at its id (ids are not
    // secret) cannot lock its holder out. Everything else waits out a block.
    if !proven {
        throttle.check(client, id).map_err(Refused::throttled)?;
    }
    let lookup = || {
        let state = ctx.ledger.read();
        state.ledger().token(id).cloned()
    };
    let mut record = lookup();
    if record.is_none() {
        // Made a moment ago from the shell? Read the journal's newest records first
        // (bounded by the throttle above, like every failure).
        ctx.read_journal().await;
        record = lookup();
    }
    let Some(record) = record.filter(|r| r.revoked_at.is_none()) else {
        // Unknown or revoked: the same verification as a known id, so that the
        // answer's time tells nothing.
        throttle.verify(None, secret).await;
        throttle.failed(client, id, "unknown or revoked token id");
        return Err(invalid());
    };
    if !proven {
        if !throttle.verify(Some(record.hash.clone()), secret).await {
            throttle.failed(client, id, "wrong secret");
            return Err(invalid());
        }
        ctx.auth
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, id.to_string());
    }
    identity_of_token(ctx, &record.id).ok_or_else(invalid)
}

/// The session of `cookie`, if its signature holds, it has not expired and it was
/// not signed out.
pub(crate) fn live_session(ctx: &ApiContext, cookie: &str) -> Option<session::Session> {
    let session = ctx.auth.sessions.get(cookie)?;
    let closed = ctx
        .ledger
        .read()
        .ledger()
        .session_closed(&session::digest(cookie));
    (!closed).then_some(session)
}

/// What a cookie session means for a request: `None` when it sent no session
/// cookie; else the caller, or why not.
pub(crate) fn identify_session(ctx: &ApiContext, req: &Request) -> Option<Result<Identity, Response>> {
    let cookie = session::cookie_of(req.headers())?;
    let refused = |status: StatusCode, message: &str| {
        (
            status,
            Json(ErrorBody {
                error: message.to_string(),
            }),
        )
            .into_response()
    };
    let Some(session) = live_session(ctx, &cookie) else {
        return Some(Err(refused(
            StatusCode::UNAUTHORIZED,
            "the session ended; sign in again",
        )));
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let csrf_ok = req
        .headers()
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| session::constant_time_eq(v.as_bytes(), session.csrf.as_bytes()));
    if !safe && !csrf_ok {
        return Some(Err(refused(
            StatusCode::FORBIDDEN,
            "a change made with the session cookie needs the session's X-CSRF-Token header",
        )));
    }
    Some(identity_of_token(ctx, &session.token_id).ok_or_else(|| {
        refused(
            StatusCode::UNAUTHORIZED,
            "the session's token was revoked; sign in again",
        )
    }))
}

/// The gate of every route that needs `min`: it puts the caller's [`Identity`]
/// into the request for the handler.
pub(crate) async fn gate(ctx: ApiContext, min: Role, mut req: Request, next: Next) -> Response {
    // A change is decided against everything on record: what the shell or another
    // process journalled a moment ago (a user, a token, a revocation) counts already.
    if !req.method().is_safe() {
        ctx.read_journal().await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
        });
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let identity = match bearer {
        Some(Some(token)) => match identify(&ctx, token, client).await {
            Ok(identity) => identity,
            Err(refused) => return refused.into_response(),
        },
        Some(None) => return Refused::unauthorized("Authorization must be `Bearer <token>`").into_response(),
        None => match identify_session(&ctx, &req) {
            Some(Ok(identity)) => identity,
            Some(Err(refused)) => return refused,
            None if min == Role::Viewer && ctx.auth.anonymous_read => Identity {
                user: "anonymous".into(),
                role: Role::Viewer,
                token: None,
                client: None,
            },
            None => {
                return Refused::unauthorized("this needs a token: Authorization: Bearer <token>")
                    .into_response()
            }
        },
    };
    let mut identity = identity;
    identity.client = client.map(|ip| ip.to_string());
    if identity.role < min {
        return Refused {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "{} has the role {}; {} {} needs {}",
                identity.user,
                identity.role.as_str(),
                req.method(),
                req.uri().path(),
                min.as_str()
            ),
            retry_after: None,
        }
        .into_response();
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// `router` with every route behind the gate for `min`.
pub(crate) fn guard(
    router: axum::Router<ApiContext>,
    ctx: &ApiContext,
    min: Role,
) -> axum::Router<ApiContext> {
    let ctx = ctx.clone();
    router.route_layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let ctx = ctx.clone();
        async move { gate(ctx, min, req, next).await }
    }))
}
