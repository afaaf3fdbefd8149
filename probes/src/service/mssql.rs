//! Microsoft SQL Server (MS-TDS): a PRELOGIN message is answered with a PRELOGIN
//! response (packet type 4) whose VERSION option carries the server's version.

use super::{Conn, Found, Reply};

/// PRELOGIN with VERSION, ENCRYPTION (not supported), INSTOPT, THREADID, MARS.
pub fn request() -> Vec<u8> {
    let options: [(u8, u16); 5] = [(0, 6), (1, 1), (2, 1), (3, 4), (4, 1)];
    let table_len = options.len() * 5 + 1;
    let mut table = Vec::new();
    let mut offset = table_len as u16;
    for (token, len) in options {
        table.push(token);
        table.extend_from_slice(&offset.to_be_bytes());
        table.extend_from_slice(&len.to_be_bytes());
        offset += len;
    }
    table.push(0xff);
    table.extend_from_slice(&[0; 6]); // version
    table.push(2); // encryption: not supported
    table.push(0); // instance: default
    table.extend_from_slice(&[0; 4]); // thread id
    table.push(0); // MARS off
    let mut msg = vec![0x12, 0x01];
    msg.extend_from_slice(&((table.len() + 8) as u16).to_be_bytes());
    msg.extend_from_slice(&[0, 0, 1, 0]);
    msg.extend_from_slice(&table);
    msg
}

fn complete(b: &[u8]) -> bool {
    b.len() >= 8 && b.len() >= usize::from(u16::from_be_bytes([b[2], b[3]]))
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if reply.len() < 8 || reply[0] != 0x04 || !complete(reply) {
        return None;
    }
    let payload = &reply[8..usize::from(u16::from_be_bytes([reply[2], reply[3]]))];
    // Walk the option table to the terminator; VERSION is token 0, 6 bytes.
    let mut at = 0;
    let mut version = None;
    loop {
        let token = *payload.get(at)?;
        if token == 0xff {
            break;
        }
        let offset = usize::from(u16::from_be_bytes(payload.get(at + 1..at + 3)?.try_into().ok()?));
        let len = usize::from(u16::from_be_bytes(payload.get(at + 3..at + 5)?.try_into().ok()?));
        payload.get(offset..offset + len)?;
        if token == 0 && len >= 6 {
            let v = &payload[offset..offset + 6];
            version = Some(format!("{}.{}.{}", v[0], v[1], u16::from_be_bytes([v[2], v[3]])));
        }
        at += 5;
    }
    let version = version?;
    Some(
        Found::new("ms-sql-s")
            .product("Microsoft SQL Server")
            .version(Some(version)),
    )
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
        let mut reply = request();
        assert!(parse(&reply).is_none(), "an echo is a request");
        reply[0] = 0x04;
        let v = 8 + 26; // version data
        reply[v..v + 4].copy_from_slice(&[15, 0, 0x07, 0xd0]);
        assert_eq!(parse(&reply).unwrap().version.as_deref(), Some("15.0.2000"));
    }
}
