//! DNS over TCP (RFC 1035, 7766): a `version.bind` TXT/CH query, length-prefixed.
//! A server answers with the same id and the response bit set; many tell their
//! version in the TXT answer.

use super::{Conn, Found, Reply};

const ID: [u8; 2] = [0x70, 0x77];

/// The query, with its two-byte length prefix.
pub fn request() -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&ID);
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    q.extend_from_slice(b"\x07version\x04bind\x00");
    q.extend_from_slice(&[0, 16, 0, 3]); // TXT, CH
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&q);
    msg
}

fn complete(b: &[u8]) -> bool {
    b.len() >= 2 && b.len() >= 2 + usize::from(u16::from_be_bytes([b[0], b[1]]))
}

/// Skip a (possibly compressed) name at `at`; the offset after it.
fn skip_name(m: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *m.get(at)?;
        if len == 0 {
            return Some(at + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1 + usize::from(len);
    }
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if !complete(reply) {
        return None;
    }
    let m = &reply[2..];
    if m.len() < 12 || m[..2] != ID || m[2] & 0x80 == 0 {
        return None;
    }
    let (qd, an) = (u16::from_be_bytes([m[4], m[5]]), u16::from_be_bytes([m[6], m[7]]));
    let mut version = None;
    if m[3] & 0x0f == 0 && an > 0 {
        let mut at = 12;
        for _ in 0..qd {
            at = skip_name(m, at)? + 4;
        }
        at = skip_name(m, at)?;
        let kind = u16::from_be_bytes(m.get(at..at + 2)?.try_into().ok()?);
        let rdata = at + 10;
        if kind == 16 {
            let len = usize::from(*m.get(rdata)?);
            version = m
                .get(rdata + 1..rdata + 1 + len)
                .map(|t| String::from_utf8_lossy(t).to_string());
        }
    }
    Some(Found::new("domain").version(version))
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    super::request_reply(conn, request(), complete, parse)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let q = request();
        assert!(parse(&q).is_none(), "an echo has no response bit");
        let mut r = q[2..].to_vec();
        r[2] = 0x84; // response, authoritative
        r[7] = 1; // one answer
        r.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 3, 0, 0, 0, 0]);
        let txt = b"9.18.24-1-Debian";
        r.extend_from_slice(&((txt.len() + 1) as u16).to_be_bytes());
        r.push(txt.len() as u8);
        r.extend_from_slice(txt);
        let mut msg = (r.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(&r);
        assert_eq!(parse(&msg).unwrap().version.as_deref(), Some("9.18.24-1-Debian"));
    }
}
