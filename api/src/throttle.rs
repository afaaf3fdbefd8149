//! Failed authentications, kept expensive for the attacker and cheap for everyone
//! else.
//!
//! Verifying a token's secret is an argon2 computation (~30 ms of CPU, on purpose).
//! Unthrottled, a thousand wrong secrets for a known token id held a valid request
//! back for seconds, and a known id answered far slower than an unknown one (an
//! oracle for valid ids). So: verifications run behind a small semaphore; an
//! unknown or revoked id is verified against a dummy hash, costing the same as a
//! known one; and failures are counted per client address and per token id: past
//! [`FAILURES_PER_MINUTE`] (with a burst of as many), further attempts from that
//! address or for that id get 429 with `Retry-After` before any hashing. Every
//! failure is logged (id and address, never the secret) and counted
//! (`portwatch_api_auth_failures_total`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

/// Failed authentications allowed per client address, and per token id, a minute,
/// unless `[auth] failures_per_minute` says otherwise.
pub(crate) const FAILURES_PER_MINUTE: u32 = 10;
/// argon2 verifications at once.
const VERIFICATIONS: usize = 2;
/// Keys kept blocked at most (the oldest go first): a bound on memory.
const MAX_BLOCKED: usize = 100_000;

/// What a throttled attempt is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryAfter(pub(crate) Duration);

/// The throttle of one server.
pub(crate) struct Throttle {
    by_client: DefaultKeyedRateLimiter<IpAddr>,
    by_token: DefaultKeyedRateLimiter<String>,
    blocked: Mutex<HashMap<String, Instant>>,
    verifications: Semaphore,
    dummy: String,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

impl Throttle {
    /// A throttle whose unknown ids are verified against `dummy_hash` (the PHC
    /// string of a secret nobody has).
    /// `per_minute` failures are allowed per address and per id, in a burst or
    /// spread over the minute.
    pub(crate) fn new(dummy_hash: String, per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(per_minute);
        Self {
            by_client: RateLimiter::keyed(quota),
            by_token: RateLimiter::keyed(quota),
            blocked: Mutex::new(HashMap::new()),
            verifications: Semaphore::new(VERIFICATIONS),
            dummy: dummy_hash,
        }
    }

    /// The same throttle allowing `per_minute` failures (the dummy hash kept: it
    /// costs an argon2 computation to make).
    pub(crate) fn with_failures_per_minute(self, per_minute: u32) -> Self {
        Throttle::new(self.dummy, per_minute)
    }
}

fn client_key(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "client:unknown".to_string(), |ip| format!("client:{ip}"))
}

impl Throttle {
    /// Whether attempts from `client` or for `token_id` must wait, and how long.
    pub(crate) fn check(&self, client: Option<IpAddr>, token_id: &str) -> Result<(), RetryAfter> {
        let now = Instant::now();
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let wait = [client_key(client), format!("token:{token_id}")]
            .iter()
            .filter_map(|k| blocked.get(k))
            .filter(|until| **until > now)
            .map(|until| *until - now)
            .max();
        match wait {
            Some(w) => Err(RetryAfter(w)),
            None => Ok(()),
        }
    }

    /// Count a failed attempt; past the quota the address or id is blocked for the
    /// time the quota needs to allow one more.
    pub(crate) fn failed(&self, client: Option<IpAddr>, token_id: &str, why: &str) {
        metrics::counter!("portwatch_api_auth_failures_total").increment(1);
        tracing::warn!(client = ?client, token = %token_id, why, "authentication failed");
        let clock = DefaultClock::default();
        let mut blocks = Vec::new();
        if let Some(ip) = client {
            if let Err(not_until) = self.by_client.check_key(&ip) {
                blocks.push((client_key(client), not_until.wait_time_from(clock.now())));
            }
        }
        let id = token_id.to_string();
        if let Err(not_until) = self.by_token.check_key(&id) {
            blocks.push((format!("token:{id}"), not_until.wait_time_from(clock.now())));
        }
        if blocks.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if blocked.len() >= MAX_BLOCKED {
            blocked.retain(|_, until| *until > now);
        }
        for (key, wait) in blocks {
            tracing::warn!(key = %key, wait_secs = wait.as_secs_f64(), "too many failed authentications; throttled");
            blocked.insert(key, now + wait.max(Duration::from_secs(1)));
        }
        self.by_client.retain_recent();
        self.by_token.retain_recent();
    }

    /// Verify `secret` against `hash` (a PHC string), or against the dummy when
    /// there is none, behind the semaphore, off the async threads.
    pub(crate) async fn verify(&self, hash: Option<String>, secret: &str) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let Ok(_permit) = self.verifications.acquire().await else {
            return false;
        };
        let secret = secret.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

/// Seconds for `Retry-After`, rounded up.
pub(crate) fn retry_after_secs(wait: RetryAfter) -> u64 {
    wait.0.as_secs() + u64::from(wait.0.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, SaltString};

    use super::*;

    fn hash(secret: &str) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .expect("hash")
            .to_string()
    }

    #[test]
    fn an_address_past_its_failures_waits_and_others_do_not() {
        let t = Throttle::new(hash("no token has this secret"), FAILURES_PER_MINUTE);
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        let other: IpAddr = "192.0.2.10".parse().expect("ip");
        for i in 0..FAILURES_PER_MINUTE {
            assert_eq!(t.check(Some(ip), &format!("id{i}")), Ok(()), "attempt {i}");
            t.failed(Some(ip), &format!("id{i}"), "test");
        }
        t.failed(Some(ip), "one-more", "test");
        let wait = t.check(Some(ip), "fresh").expect_err("throttled");
        assert!(
            wait.0 > Duration::ZERO && wait.0 <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(retry_after_secs(wait) >= 1);
        assert_eq!(t.check(Some(other), "fresh"), Ok(()));
        // One id attacked from many addresses is throttled as well.
        for i in 0..=FAILURES_PER_MINUTE {
            let from: IpAddr = format!("198.51.100.{i}").parse().expect("ip");
            t.failed(Some(from), "target", "test");
        }
        assert!(t.check(Some(other), "target").is_err());
    }

    #[tokio::test]
    async fn unknown_ids_are_verified_against_a_dummy_and_never_pass() {
        let t = Throttle::new(hash("no token has this secret"), FAILURES_PER_MINUTE);
        assert!(
            !t.verify(None, "no token has this secret").await,
            "the dummy's own secret"
        );
        let hash = hash("s3cret");
        assert!(t.verify(Some(hash.clone()), "s3cret").await);
        assert!(!t.verify(Some(hash), "guess").await);
    }
}
