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

use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "portwatch_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first): a bound on memory.
const MAX_SESSIONS: usize = 10_000;
/// Sessions one token opens at most (its oldest goes first), so that one token
/// cannot fill the table and sign everyone else out.
pub(crate) const MAX_PER_TOKEN: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) token_id: String,
    pub(crate) csrf: String,
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
    pub(crate) fn open(&self, token_id: &str) -> (String, String) {
        let (cookie, csrf) = (random_hex(), random_hex());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, s| s.expires > now);
        // The oldest of the sessions `of` picks goes when there are `max` of them.
        let make_room = |open: &mut HashMap<[u8; 32], Session>, max: usize, of: &dyn Fn(&Session) -> bool| {
            let held = open.values().filter(|s| of(s)).count();
            let oldest = open
                .iter()
                .filter(|(_, s)| of(s))
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest.filter(|_| held >= max) {
                open.remove(&oldest);
            }
        };
        make_room(&mut open, MAX_PER_TOKEN, &|s| s.token_id == token_id);
        make_room(&mut open, MAX_SESSIONS, &|_| true);
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

    pub(crate) fn get(&self, cookie: &str) -> Option<Session> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&key(cookie))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub(crate) fn close(&self, cookie: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(cookie));
    }
}

/// The session cookie of a request, if it sent one.
pub(crate) fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Set-Cookie` of a session; `Secure` as the server is set up (it serves
/// HTTPS, or listens beyond loopback), never as a request's headers claim.
pub(crate) fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
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
    fn the_cookie_is_found_among_others_and_secure_as_the_server_is_set_up() {
        let h = headers(&[("cookie", "a=1; portwatch_session=abc; b=2")]);
        assert_eq!(cookie_of(&h).as_deref(), Some("abc"));
        assert_eq!(cookie_of(&headers(&[("cookie", "portwatch_sessionx=1")])), None);
        let c = set_cookie("v", 60, true);
        let c = c.to_str().expect("ascii");
        for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=60"] {
            assert!(c.contains(flag), "{c}");
        }
        let plain = set_cookie("v", 60, false);
        assert!(!plain.to_str().expect("ascii").contains("Secure"), "{plain:?}");
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

    #[test]
    fn one_token_holds_a_bounded_number_of_sessions() {
        let sessions = Sessions::default();
        let other = sessions.open("t2").0;
        let first = sessions.open("t1").0;
        for _ in 0..MAX_PER_TOKEN {
            sessions.open("t1");
        }
        assert!(
            sessions.get(&first).is_none(),
            "the token's oldest session made room"
        );
        let held = sessions
            .open
            .lock()
            .expect("lock")
            .values()
            .filter(|s| s.token_id == "t1")
            .count();
        assert_eq!(held, MAX_PER_TOKEN);
        assert!(sessions.get(&other).is_some(), "another token's session stays");
    }
}
