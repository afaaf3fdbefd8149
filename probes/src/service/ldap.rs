//! LDAP v3 (RFC 4511): an anonymous simple BindRequest (message 1) is answered with
//! a BindResponse: SEQUENCE { INTEGER 1, [APPLICATION 1] { resultCode, ... } }.

use super::{Conn, Found, Reply};

/// Anonymous bind, LDAPv3, message id 1.
pub const BIND: [u8; 14] = [
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
];

/// A BER length at `b[at..]`: (length, bytes it took).
fn ber_len(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let first = *b.get(at)?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = len << 8 | usize::from(*b.get(at + 1 + i)?);
    }
    Some((len, 1 + n))
}

fn complete(b: &[u8]) -> bool {
    ber_len(b, 1).is_some_and(|(len, took)| b.len() >= 1 + took + len)
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if reply.first() != Some(&0x30) || !complete(reply) {
        return None;
    }
    let (_, took) = ber_len(reply, 1)?;
    let at = 1 + took;
    // messageID INTEGER 1, then the BindResponse tag (or an ExtendedResponse notice
    // of disconnection, 0x78, which servers send when they refuse).
    if reply.get(at..at + 3)? != [0x02, 0x01, 0x01] && reply.get(at..at + 2)? != [0x02, 0x01] {
        return None;
    }
    let op = *reply.get(at + 3)?;
    if op != 0x61 && op != 0x78 {
        return None;
    }
    let (_, took) = ber_len(reply, at + 4)?;
    // resultCode ENUMERATED
    (reply.get(at + 4 + took)? == &0x0a).then(|| Found::new("ldap"))
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    super::request_reply(conn, BIND.to_vec(), complete, parse)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let ok = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(parse(&ok).unwrap().service, "ldap");
        assert!(parse(&BIND).is_none(), "an echo is a request");
    }
}
