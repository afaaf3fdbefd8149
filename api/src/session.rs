//! Console sessions: a person signs in once with their API token and the browser
//! holds a session cookie instead of the token.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
//! page sends it) and `Secure` unless the console is reached over plain HTTP on a
//! loopback address (where browsers accept it too, but an operator trying
//! `portwatch up` locally must not be locked out by a proxy-less setup). Requests
//! that change something and ride on the cookie must also carry the session's CSRF
//! token in `X-CSRF-Token`: a forged form from elsewhere has the cookie at best, never
//! the token. Requests with a bearer token need no CSRF token (nothing ambient).
//!
//! A session names the API token it was opened with, so revoking the token or
//! changing the user's role takes effect at the session's next request. Sessions
//! live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portwatch_projections::Role;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{identify, identity_of_token, Identity};
use crate::error::{ApiError, ErrorBody};
use crate::ApiContext;

/// The session cookie's name.
pub const COOKIE: &str = "portwatch_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first): a bound on memory.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
struct Session {
    token_id: String,
    csrf: String,
    expires: Instant,
}

/// The open sessions, by the SHA-256 of their cookie.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// A new session for the token `token_id`: (cookie value, CSRF token).
    fn open(&self, token_id: &str) -> (String, String) {
        let (cookie, csrf) = (random_hex(), random_hex());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                open.remove(&oldest);
            }
        }
        open.insert(
            key(&cookie),
            Session {
                token_id: token_id.to_string(),
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (cookie, csrf)
    }

    fn get(&self, cookie: &str) -> Option<Session> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&key(cookie))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    fn close(&self, cookie: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(cookie));
    }
}

/// The session cookie of a request, if it sent one.
fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// What a cookie session means for a request: `None` when it sent no session
/// cookie; else the caller, or why not.
pub(crate) fn identify_session(ctx: &ApiContext, req: &Request) -> Option<Result<Identity, Response>> {
    let cookie = cookie_of(req.headers())?;
    let refused = |status: StatusCode, message: &str| {
        (
            status,
            Json(ErrorBody {
                error: message.to_string(),
            }),
        )
            .into_response()
    };
    let Some(session) = ctx.auth.sessions.get(&cookie) else {
        return Some(Err(refused(
            StatusCode::UNAUTHORIZED,
            "the session ended; sign in again",
        )));
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let csrf_ok = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), session.csrf.as_bytes()));
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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

/// Whether the request reached us over plain HTTP on a loopback address, where a
/// `Secure` cookie would lock out a proxy-less local console.
fn plain_loopback(headers: &HeaderMap) -> bool {
    if headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .unwrap_or_else(|| host.rsplit_once(':').map_or(host, |(h, _)| h));
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn set_cookie(value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    let secure = if plain_loopback(headers) { "" } else { "; Secure" };
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sign in with an API token: opens a session and sets its cookie.
#[utoipa::path(post, path = "/api/v1/session", tag = "users", request_body = Login, security(()),
    responses(
        (status = 200, description = "Signed in; the cookie is set.", body = SessionView),
        (status = 400, description = "The body is wrong; the message names the field.", body = ErrorBody),
        (status = 401, description = "Not a valid token.", body = ErrorBody),
))]
pub(crate) async fn login(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))?;
    let who = match identify(&ctx, body.token.trim()).await {
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
        set_cookie(&cookie, LIFETIME.as_secs(), &headers),
    );
    Ok(response)
}

/// The session of the cookie: who, their role now, and the CSRF token.
#[utoipa::path(get, path = "/api/v1/session", tag = "users", security(()),
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
    let Some(session) = ctx.auth.sessions.get(&cookie) else {
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

/// Sign out: ends the session and clears its cookie.
#[utoipa::path(delete, path = "/api/v1/session", tag = "users", security(()),
    responses((status = 204, description = "Signed out (or was not signed in).")))]
pub(crate) async fn logout(State(ctx): State<ApiContext>, headers: HeaderMap) -> Response {
    if let Some(cookie) = cookie_of(&headers) {
        ctx.auth.sessions.close(&cookie);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, &headers));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others_and_secure_off_loopback() {
        let h = headers(&[("cookie", "a=1; portwatch_session=abc; b=2")]);
        assert_eq!(cookie_of(&h).as_deref(), Some("abc"));
        assert_eq!(cookie_of(&headers(&[("cookie", "portwatch_sessionx=1")])), None);
        for host in ["127.0.0.1:7678", "localhost:7678", "[::1]:7678", "localhost"] {
            assert!(plain_loopback(&headers(&[("host", host)])), "{host}");
        }
        for host in ["10.0.0.5:7678", "portwatch.example.org", "[2001:db8::1]:443"] {
            assert!(!plain_loopback(&headers(&[("host", host)])), "{host}");
        }
        assert!(!plain_loopback(&headers(&[
            ("host", "127.0.0.1:7678"),
            ("x-forwarded-proto", "https")
        ])));
        let c = set_cookie("v", 60, &headers(&[("host", "10.0.0.5")]));
        let c = c.to_str().expect("ascii");
        for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=60"] {
            assert!(c.contains(flag), "{c}");
        }
    }

    #[test]
    fn sessions_open_close_and_compare_csrf_in_constant_time() {
        let sessions = Sessions::default();
        let (cookie, csrf) = sessions.open("t1");
        assert_ne!(cookie, csrf);
        let s = sessions.get(&cookie).expect("open");
        assert_eq!((s.token_id.as_str(), s.csrf.as_str()), ("t1", csrf.as_str()));
        assert!(sessions.get("forged").is_none());
        sessions.close(&cookie);
        assert!(sessions.get(&cookie).is_none());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }
}
