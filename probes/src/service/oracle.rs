//! Oracle TNS listener: a CONNECT packet asking for the listener version is answered
//! with a TNS packet (ACCEPT, REFUSE, REDIRECT or RESEND); refusals carry
//! `(DESCRIPTION=...(VSNNUM=n)...)`, the version as one number.

use super::{Conn, Found, Reply};

const DATA: &[u8] = b"(CONNECT_DATA=(COMMAND=version))";
const DATA_OFFSET: usize = 58;

/// A TNS CONNECT packet.
pub fn request() -> Vec<u8> {
    let total = DATA_OFFSET + DATA.len();
    let mut p = vec![0u8; DATA_OFFSET];
    p[0..2].copy_from_slice(&(total as u16).to_be_bytes());
    p[4] = 1; // CONNECT
    p[8..10].copy_from_slice(&0x0139u16.to_be_bytes()); // version 313
    p[10..12].copy_from_slice(&0x012cu16.to_be_bytes()); // lowest 300
    p[14..16].copy_from_slice(&0x0800u16.to_be_bytes()); // SDU
    p[16..18].copy_from_slice(&0x7fffu16.to_be_bytes()); // TDU
    p[18..20].copy_from_slice(&0x7f08u16.to_be_bytes()); // characteristics
    p[22..24].copy_from_slice(&0x0100u16.to_be_bytes()); // value of 1 in hardware
    p[24..26].copy_from_slice(&(DATA.len() as u16).to_be_bytes());
    p[26..28].copy_from_slice(&(DATA_OFFSET as u16).to_be_bytes());
    p[32] = 0x41;
    p[33] = 0x41;
    p.extend_from_slice(DATA);
    p
}

fn complete(b: &[u8]) -> bool {
    b.len() >= 8 && b.len() >= usize::from(u16::from_be_bytes([b[0], b[1]]))
}

/// Decode a VSNNUM (e.g. 318767104 = 0x13000000 = 19.0.0.0.0).
pub fn vsnnum(n: u32) -> String {
    format!(
        "{}.{}.{}.{}.{}",
        n >> 24,
        (n >> 20) & 0xf,
        (n >> 12) & 0xff,
        (n >> 8) & 0xf,
        n & 0xff
    )
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if !complete(reply) || reply.len() < 8 {
        return None;
    }
    let kind = reply[4];
    let text = String::from_utf8_lossy(&reply[8..]);
    let telling = text.contains("(DESCRIPTION=") || text.contains("(ERR=") || text.contains("VSNNUM=");
    let ok = match kind {
        2 | 11 => true, // ACCEPT, RESEND
        4 | 5 => telling,
        _ => false,
    };
    if !ok {
        return None;
    }
    let version = text
        .split("VSNNUM=")
        .nth(1)
        .and_then(|v| v.split(')').next())
        .and_then(|v| v.parse::<u32>().ok())
        .map(vsnnum);
    Some(
        Found::new("oracle-tns")
            .product("Oracle TNS listener")
            .version(version),
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
        let text =
            b"(DESCRIPTION=(TMP=)(VSNNUM=318767104)(ERR=1189)(ERROR_STACK=(ERROR=(CODE=1189)(EMFI=4))))";
        let mut refuse = ((12 + text.len()) as u16).to_be_bytes().to_vec();
        refuse.extend_from_slice(&[0, 0, 4, 0, 0, 0, 0x22, 0, 0, (text.len()) as u8]);
        refuse.extend_from_slice(text);
        let f = parse(&refuse).unwrap();
        assert_eq!(f.version.as_deref(), Some("19.0.0.0.0"));
        assert!(parse(&request()).is_none(), "an echo is a CONNECT");
    }
}
