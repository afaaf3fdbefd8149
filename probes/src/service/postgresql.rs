//! PostgreSQL (frontend/backend protocol 3.0): a StartupMessage for a user that is
//! unlikely to exist is answered with an authentication request (`R`) or an error
//! (`E`, with severity, SQLSTATE and message fields). The server names its version
//! only after authentication (`ParameterStatus server_version`), which is read when a
//! server lets the probe in without a password.

use super::{Conn, Found, Reply};

/// The StartupMessage sent: protocol 3.0, user and database `portwatch`.
pub fn startup() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // 3.0
    for (k, v) in [
        ("user", "portwatch"),
        ("database", "portwatch"),
        ("application_name", "portwatch"),
    ] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// Messages (type, payload) in `b`, as far as they are complete.
fn messages(b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = b;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len < 4 || rest.len() < 1 + len {
            break;
        }
        out.push((rest[0], &rest[5..1 + len]));
        rest = &rest[1 + len..];
    }
    out
}

/// Parse the reply to the StartupMessage.
pub fn parse(reply: &[u8]) -> Option<Found> {
    let msgs = messages(reply);
    let (kind, payload) = *msgs.first()?;
    let found = Found::new("postgresql").product("PostgreSQL");
    match kind {
        // An error: fields of (code byte, NUL-terminated text), ending in NUL. A real
        // server sends severity `S` and SQLSTATE `C`.
        b'E' => {
            let mut fields = payload.split(|&c| c == 0).filter(|f| !f.is_empty());
            let has = |f: &[u8], code: u8| f.first() == Some(&code);
            let all: Vec<&[u8]> = fields.by_ref().collect();
            (all.iter().any(|f| has(f, b'S')) && all.iter().any(|f| has(f, b'C') && f.len() == 6))
                .then_some(found)
        }
        // An authentication request: 4-byte code (0 ok, 3 cleartext, 5 md5, 10 SASL).
        b'R' if payload.len() >= 4 => {
            let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            if ![0, 2, 3, 5, 7, 9, 10].contains(&code) {
                return None;
            }
            let version = msgs.iter().find_map(|(k, p)| {
                let mut parts = p.split(|&c| c == 0);
                (*k == b'S' && parts.next() == Some(b"server_version".as_slice()))
                    .then(|| parts.next().map(|v| String::from_utf8_lossy(v).to_string()))
                    .flatten()
            });
            let version = version.map(|v| v.split_whitespace().next().unwrap_or_default().to_string());
            Some(found.version(version))
        }
        _ => None,
    }
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    Box::pin(async move {
        let reply = conn
            .exchange(&startup(), |b| {
                // Complete once an error arrived, or authentication ended in
                // ReadyForQuery, or a password is asked for.
                messages(b).iter().any(|(k, p)| {
                    *k == b'E' || *k == b'Z' || (*k == b'R' && p.len() >= 4 && p[..4] != [0, 0, 0, 0])
                })
            })
            .await?;
        Ok(parse(reply))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((payload.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn replies() {
        let err = msg(
            b'E',
            b"SFATAL\0VFATAL\0C28000\0Mrole \"portwatch\" does not exist\0Fpostinit.c\0L1003\0\0",
        );
        assert_eq!(parse(&err).unwrap().product.as_deref(), Some("PostgreSQL"));
        let md5 = msg(b'R', &[0, 0, 0, 5, 1, 2, 3, 4]);
        assert!(parse(&md5).is_some());
        let mut trusted = msg(b'R', &[0, 0, 0, 0]);
        trusted.extend(msg(b'S', b"server_version\x0015.5 (Debian 15.5-0+deb12u1)\0"));
        assert_eq!(parse(&trusted).unwrap().version.as_deref(), Some("15.5"));
        assert!(parse(&startup()).is_none(), "an echo is not PostgreSQL");
        assert!(parse(&msg(b'E', b"Mhello\0\0")).is_none());
    }
}
