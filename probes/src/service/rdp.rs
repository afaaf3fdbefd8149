//! RDP (MS-RDPBCGR): an X.224 Connection Request with an RDP negotiation request is
//! answered with an X.224 Connection Confirm (TPKT version 3, CC code 0xd0).

use super::{Conn, Found, Reply};

/// TPKT + X.224 CR + RDP_NEG_REQ (TLS and CredSSP).
pub const REQUEST: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x03, 0x00,
    0x00, 0x00,
];

fn complete(b: &[u8]) -> bool {
    b.len() >= 4 && b.len() >= usize::from(u16::from_be_bytes([b[2], b[3]]))
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    let ok = reply.len() >= 7 && reply[0] == 3 && reply[1] == 0 && complete(reply) && reply[5] & 0xf0 == 0xd0;
    ok.then(|| Found::new("ms-wbt-server"))
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    super::request_reply(conn, REQUEST.to_vec(), complete, parse)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let cc = [
            0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0, 0, 0x12, 0x34, 0, 0x02, 0x1f, 0x08, 0, 0x02, 0, 0, 0,
        ];
        assert!(parse(&cc).is_some());
        assert!(parse(&REQUEST).is_none(), "an echo is a request");
    }
}
