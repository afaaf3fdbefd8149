//! MongoDB (wire protocol, OP_MSG): `buildinfo` on `admin` is answered without
//! authentication with the server's version. The reply must be an OP_MSG answering
//! this request's id.

use super::{Conn, Found, Reply};

const REQUEST_ID: i32 = 0x7077_6174;
const OP_MSG: i32 = 2013;

/// The OP_MSG carrying `{buildinfo: 1, $db: "admin"}`.
pub fn request() -> Vec<u8> {
    let mut doc = Vec::new();
    doc.push(0x10);
    doc.extend_from_slice(b"buildinfo\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0x02);
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let mut bson = ((doc.len() + 4) as i32).to_le_bytes().to_vec();
    bson.extend_from_slice(&doc);
    let mut body = 0u32.to_le_bytes().to_vec(); // flag bits
    body.push(0); // section kind 0: one document
    body.extend_from_slice(&bson);
    let mut msg = ((body.len() + 16) as i32).to_le_bytes().to_vec();
    msg.extend_from_slice(&REQUEST_ID.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&OP_MSG.to_le_bytes());
    msg.extend_from_slice(&body);
    msg
}

fn le32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn complete(b: &[u8]) -> bool {
    le32(b, 0).is_some_and(|len| len >= 16 && b.len() >= len as usize)
}

/// The string element `key` of a top-level BSON document.
fn bson_string(doc: &[u8], key: &str) -> Option<String> {
    let mut pattern = vec![0x02];
    pattern.extend_from_slice(key.as_bytes());
    pattern.push(0);
    let at = doc.windows(pattern.len()).position(|w| w == pattern.as_slice())? + pattern.len();
    let len = le32(doc, at)? as usize;
    let s = doc.get(at + 4..at + 4 + len.checked_sub(1)?)?;
    Some(String::from_utf8_lossy(s).to_string())
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if !complete(reply) || le32(reply, 8)? != REQUEST_ID || le32(reply, 12)? != OP_MSG {
        return None;
    }
    let doc = reply.get(21..)?;
    Some(
        Found::new("mongodb")
            .product("MongoDB")
            .version(bson_string(doc, "version")),
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
        // A reply: header answering our id, flags, kind 0, {version: "7.0.4", ok: 1.0}.
        let mut doc = vec![0x02];
        doc.extend_from_slice(b"version\0");
        doc.extend_from_slice(&6i32.to_le_bytes());
        doc.extend_from_slice(b"7.0.4\0");
        doc.push(0x01);
        doc.extend_from_slice(b"ok\0");
        doc.extend_from_slice(&1f64.to_le_bytes());
        doc.push(0);
        let mut bson = ((doc.len() + 4) as i32).to_le_bytes().to_vec();
        bson.extend_from_slice(&doc);
        let mut body = vec![0, 0, 0, 0, 0];
        body.extend_from_slice(&bson);
        let mut reply = ((body.len() + 16) as i32).to_le_bytes().to_vec();
        reply.extend_from_slice(&1i32.to_le_bytes());
        reply.extend_from_slice(&REQUEST_ID.to_le_bytes());
        reply.extend_from_slice(&OP_MSG.to_le_bytes());
        reply.extend_from_slice(&body);
        assert_eq!(parse(&reply).unwrap().version.as_deref(), Some("7.0.4"));
        assert!(parse(&request()).is_none(), "an echo answers no request");
    }
}
