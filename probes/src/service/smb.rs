//! SMB (MS-SMB2): an SMB2 NEGOTIATE offering dialects 2.0.2 to 3.0.2 is answered
//! with an SMB2 NEGOTIATE response naming the chosen dialect; SMB1-only servers
//! answer with an SMB1 header (`\xffSMB`).

use super::{Conn, Found, Reply};

/// NetBIOS session header + SMB2 header + NEGOTIATE request.
pub fn request() -> Vec<u8> {
    let mut smb = Vec::new();
    smb.extend_from_slice(b"\xfeSMB");
    smb.extend_from_slice(&64u16.to_le_bytes()); // structure size
    smb.extend_from_slice(&[0; 2]); // credit charge
    smb.extend_from_slice(&[0; 4]); // status
    smb.extend_from_slice(&0u16.to_le_bytes()); // NEGOTIATE
    smb.extend_from_slice(&1u16.to_le_bytes()); // credits requested
    smb.extend_from_slice(&[0; 4 + 4 + 8 + 4 + 4 + 8 + 16]); // flags .. signature
    smb.extend_from_slice(&36u16.to_le_bytes());
    smb.extend_from_slice(&4u16.to_le_bytes()); // dialect count
    smb.extend_from_slice(&1u16.to_le_bytes()); // signing enabled
    smb.extend_from_slice(&[0; 2 + 4]); // reserved, capabilities
    smb.extend_from_slice(b"portwatch-client"); // client guid (16 bytes)
    smb.extend_from_slice(&[0; 8]); // client start time
    for d in [0x0202u16, 0x0210, 0x0300, 0x0302] {
        smb.extend_from_slice(&d.to_le_bytes());
    }
    let mut msg = (smb.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&smb);
    msg
}

fn complete(b: &[u8]) -> bool {
    b.len() >= 4 && b.len() >= 4 + (u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize)
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if reply.first() != Some(&0) || !complete(reply) {
        return None;
    }
    match reply.get(4..8)? {
        b"\xffSMB" => Some(Found::new("microsoft-ds").version(Some("SMB1".into()))),
        b"\xfeSMB" => {
            // A response (flags bit 0) to NEGOTIATE (command 0).
            let command = u16::from_le_bytes(reply.get(16..18)?.try_into().ok()?);
            let flags = u32::from_le_bytes(reply.get(20..24)?.try_into().ok()?);
            if command != 0 || flags & 1 == 0 {
                return None;
            }
            let dialect = u16::from_le_bytes(reply.get(72..74)?.try_into().ok()?);
            let name = match dialect {
                0x0202 => "2.0.2",
                0x0210 => "2.1",
                0x0300 => "3.0",
                0x0302 => "3.0.2",
                0x0311 => "3.1.1",
                _ => "2.x",
            };
            Some(Found::new("microsoft-ds").version(Some(format!("SMB {name}"))))
        }
        _ => None,
    }
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
        reply[4 + 16] = 1; // response flag
        reply[4 + 68] = 0x10; // dialect 0x0210 (as if the body were a response)
        reply[4 + 69] = 0x02;
        assert_eq!(parse(&reply).unwrap().version.as_deref(), Some("SMB 2.1"));
    }
}
