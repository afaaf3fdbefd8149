//! Users and their tokens as the ledger knows them.
//!
//! A token is `pwt_<id>_<secret>`: the id names it in the journal and in logs, the
//! secret is shown once and journalled only as an argon2id hash. Issuing one is a
//! pair of decisions (the user's role, if it changes, and the token), made by an
//! [`Actor`] so that the ledger knows who issued it with which of their tokens.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use portwatch_events::decision::{
    is_system_actor, Actor, Decision, DecisionKind, Role, TokenIssued, SYSTEM_ACTORS,
};
use rand::RngCore;

/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "pwt_";

/// Why a token cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The user name is one the system acts under.
    #[error("user `{0}`: a name portwatch acts under (one of {list}, cli:*, channel:*) cannot be a user's", list = SYSTEM_ACTORS.join(", "))]
    SystemName(String),
    /// The user name has the wrong shape.
    #[error("user `{0}`: 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    /// A new user needs a role.
    #[error("user `{0}` does not exist yet: give their role")]
    NoRole(String),
    /// The secret could not be hashed.
    #[error("the token's secret cannot be hashed: {0}")]
    Hash(String),
}

/// Whether `name` is an acceptable user name: not one the system acts under.
pub fn check_user(name: &str) -> Result<(), TokenError> {
    if is_system_actor(name) {
        return Err(TokenError::SystemName(name.to_string()));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadName(name.to_string()))
    }
}

/// A token issued: the decisions to journal and what to show once.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The user's role (if it changes) and the token, to record.
    pub decisions: Vec<Decision>,
    /// The token itself: shown once, never journalled.
    pub token: String,
    /// Its public id.
    pub id: String,
    /// The user's role from now on.
    pub role: Role,
}

/// The decisions that give `user` (whose role is `current`, if they exist) a new
/// token and, if `role` is given and differs, that role, made by `by`.
pub fn issue(
    current: Option<Role>,
    user: &str,
    role: Option<Role>,
    by: &Actor,
) -> Result<Issued, TokenError> {
    check_user(user)?;
    let role = match (current, role) {
        (_, Some(r)) => r,
        (Some(r), None) => r,
        (None, None) => return Err(TokenError::NoRole(user.to_string())),
    };
    let now = chrono::Utc::now();
    let mut decisions = Vec::new();
    if current != Some(role) {
        decisions.push(by.decide(
            now,
            DecisionKind::UserSet {
                user: user.to_string(),
                role,
            },
        ));
    }
    let (token, id, hash) = new_token()?;
    decisions.push(by.decide(
        now,
        DecisionKind::TokenIssued(TokenIssued {
            token_id: id.clone(),
            user: user.to_string(),
            hash,
        }),
    ));
    Ok(Issued {
        decisions,
        token,
        id,
        role,
    })
}

/// A new token: (the token to hand out once, its id, the hash to journal).
pub fn new_token() -> Result<(String, String, String), TokenError> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    let hash = hash_secret(&secret)?;
    Ok((format!("{TOKEN_PREFIX}{id}_{secret}"), id, hash))
}

/// The argon2id PHC string of `secret`.
pub fn hash_secret(secret: &str) -> Result<String, TokenError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| TokenError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TokenError::Hash(e.to_string()))
}

/// `(id, secret)` of a token, if it has the token's shape.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    use super::*;

    #[test]
    fn tokens_have_their_shape_and_only_their_secret_verifies() {
        let (token, id, hash) = new_token().expect("token");
        let (got_id, secret) = split(&token).expect("shape");
        assert_eq!(got_id, id);
        assert!(!hash.contains(secret), "the hash is not the secret");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = PasswordHash::new(&hash).expect("phc");
        assert!(Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok());
        assert!(Argon2::default().verify_password(b"guess", &parsed).is_err());
        assert!(split("pwt_short_x").is_none());
        assert!(split("Bearer x").is_none());
    }

    #[test]
    fn system_names_and_odd_names_are_no_users() {
        for name in ["portwatch", "notifier", "allow-list", "cli:root", "channel:ops"] {
            assert_eq!(check_user(name), Err(TokenError::SystemName(name.into())));
        }
        assert_eq!(check_user("a b"), Err(TokenError::BadName("a b".into())));
        assert_eq!(check_user(""), Err(TokenError::BadName(String::new())));
        assert!(check_user("ada.l@example").is_ok());
        let err = issue(None, "ada", None, &Actor::system("cli:root")).expect_err("no role");
        assert!(err.to_string().contains("give their role"), "{err}");
        let issued = issue(None, "ada", Some(Role::Operator), &Actor::system("cli:root")).expect("issued");
        assert_eq!(issued.decisions.len(), 2, "the user, then the token");
        assert_eq!(issued.role, Role::Operator);
        assert!(issued.token.contains(&issued.id));
        assert!(!issued
            .decisions
            .iter()
            .any(|d| d.to_json().contains(&issued.token)));
    }
}
