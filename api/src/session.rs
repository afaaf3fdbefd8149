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
//! changing the user's role takes effect at the session's next request.
//!
//! Sessions are kept nowhere: the cookie itself says which token and until when,
//! signed (HMAC-SHA256) with a key derived from the ledger's key, which every API
//! process of the deployment holds. So a session survives a restart of the API and
//! works at every `control` instance, a standby that took over included. The CSRF
//! token is the cookie's own HMAC under the same key. Signing out journals the
//! cookie's digest (`session_closed`), which every instance folds: the cookie fails
//! everywhere from then on, until it would have expired anyway.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use chrono::Utc;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "portwatch_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// What the session key is derived for (see `portwatch_ledger::Key::derive`).
pub const KEY_PURPOSE: &str = "console sessions v1";

type HmacSha256 = Hmac<Sha256>;

/// An open session, as its cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) token_id: String,
    pub(crate) csrf: String,
    pub(crate) expires: chrono::DateTime<Utc>,
}

/// Opens and checks sessions with the deployment's session key.
pub struct Sessions {
    key: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(<key>)")
    }
}

impl Default for Sessions {
    /// A key of this process only (tests): its sessions end with it.
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }
}

/// The SHA-256 (hex) of a cookie: what a sign-out journals.
pub(crate) fn digest(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

impl Sessions {
    /// Sessions signed with `key` (derived from the ledger's key).
    pub fn with_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, what: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        for part in what {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    fn csrf(&self, cookie: &str) -> String {
        hex::encode(self.mac(&["csrf", cookie]).finalize().into_bytes())
    }

    /// A new session for the token `token_id`: (cookie value, CSRF token).
    pub(crate) fn open(&self, token_id: &str) -> (String, String) {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let expires = (Utc::now() + LIFETIME).timestamp().to_string();
        let nonce = hex::encode(nonce);
        let tag = hex::encode(
            self.mac(&["session", token_id, &expires, &nonce])
                .finalize()
                .into_bytes(),
        );
        let cookie = format!("{token_id}.{expires}.{nonce}.{tag}");
        let csrf = self.csrf(&cookie);
        (cookie, csrf)
    }

    /// The session `cookie` opened, if its signature holds and it has not expired
    /// (whether it was signed out is the ledger's to say).
    pub(crate) fn get(&self, cookie: &str) -> Option<Session> {
        let mut parts = cookie.rsplitn(4, '.');
        let (tag, nonce, expires, token_id) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let tag = hex::decode(tag).ok()?;
        self.mac(&["session", token_id, expires, nonce])
            .verify_slice(&tag)
            .ok()?;
        let expires = chrono::DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        (expires > Utc::now()).then(|| Session {
            token_id: token_id.to_string(),
            csrf: self.csrf(cookie),
            expires,
        })
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
    fn a_session_is_its_signed_cookie_and_nothing_else_passes() {
        let sessions = Sessions::with_key([7; 32]);
        let (cookie, csrf) = sessions.open("t1");
        assert_ne!(cookie, csrf);
        let s = sessions.get(&cookie).expect("open");
        assert_eq!((s.token_id.as_str(), s.csrf.as_str()), ("t1", csrf.as_str()));
        assert!(s.expires > Utc::now() + chrono::Duration::hours(11));
        // Another process with the same key accepts it (a restart, a standby).
        let again = Sessions::with_key([7; 32]).get(&cookie).expect("same key");
        assert_eq!(again, s);
        // Another key, a forged token id, a later expiry, a cut tag: refused.
        assert!(Sessions::with_key([8; 32]).get(&cookie).is_none());
        let parts: Vec<&str> = cookie.split('.').collect();
        let forged = [
            format!("t2.{}.{}.{}", parts[1], parts[2], parts[3]),
            format!(
                "t1.{}.{}.{}",
                parts[1].parse::<i64>().expect("secs") + 3600,
                parts[2],
                parts[3]
            ),
            format!("t1.{}.{}.{}", parts[1], parts[2], &parts[3][..10]),
            "forged".to_string(),
            String::new(),
        ];
        for f in forged {
            assert!(sessions.get(&f).is_none(), "{f}");
        }
        // An expired one, signed properly.
        let past = (Utc::now() - chrono::Duration::seconds(1))
            .timestamp()
            .to_string();
        let tag = hex::encode(
            sessions
                .mac(&["session", "t1", &past, "00"])
                .finalize()
                .into_bytes(),
        );
        assert!(sessions.get(&format!("t1.{past}.00.{tag}")).is_none());
        assert_eq!(digest(&cookie).len(), 64);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }
}
