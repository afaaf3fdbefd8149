//! Cassandra / ScyllaDB (CQL native protocol v4): an `OPTIONS` frame is answered
//! with `SUPPORTED` (a string multimap with `CQL_VERSION`, `COMPRESSION`, ...), or,
//! by servers that do not speak v4, with an `ERROR` frame naming the protocol version.

use super::{Conn, Found, Reply};

/// OPTIONS, protocol v4, stream 0x7077.
pub const OPTIONS: [u8; 9] = [0x04, 0x00, 0x70, 0x77, 0x05, 0, 0, 0, 0];

fn complete(b: &[u8]) -> bool {
    b.len() >= 9 && b.len() >= 9 + u32::from_be_bytes([b[5], b[6], b[7], b[8]]) as usize
}

fn string(b: &[u8], at: &mut usize) -> Option<String> {
    let len = usize::from(u16::from_be_bytes(b.get(*at..*at + 2)?.try_into().ok()?));
    let s = b.get(*at + 2..*at + 2 + len)?;
    *at += 2 + len;
    Some(String::from_utf8_lossy(s).to_string())
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if !complete(reply) || reply[0] & 0x80 == 0 || reply[2..4] != [0x70, 0x77] {
        return None;
    }
    let body = &reply[9..];
    match reply[4] {
        // SUPPORTED: [string multimap].
        0x06 => {
            let mut at = 0;
            let n = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
            at += 2;
            let mut keys = Vec::new();
            for _ in 0..n {
                keys.push(string(body, &mut at)?);
                let values = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?);
                at += 2;
                for _ in 0..values {
                    string(body, &mut at)?;
                }
            }
            if !keys.iter().any(|k| k == "CQL_VERSION") {
                return None;
            }
            let product = if keys.iter().any(|k| k.starts_with("SCYLLA")) {
                "ScyllaDB"
            } else {
                "Apache Cassandra"
            };
            Some(Found::new("cassandra").product(product))
        }
        // ERROR: [int code][string message]; a protocol error about the version.
        0x00 => {
            let mut at = 4;
            let message = string(body, &mut at)?;
            message
                .to_ascii_lowercase()
                .contains("protocol version")
                .then(|| Found::new("cassandra"))
        }
        _ => None,
    }
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    super::request_reply(conn, OPTIONS.to_vec(), complete, parse)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let mut body = vec![0, 2];
        for (k, v) in [("CQL_VERSION", "3.4.5"), ("COMPRESSION", "lz4")] {
            body.extend_from_slice(&(k.len() as u16).to_be_bytes());
            body.extend_from_slice(k.as_bytes());
            body.extend_from_slice(&[0, 1]);
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        let mut reply = vec![0x84, 0, 0x70, 0x77, 0x06];
        reply.extend_from_slice(&(body.len() as u32).to_be_bytes());
        reply.extend_from_slice(&body);
        assert_eq!(
            parse(&reply).unwrap().product.as_deref(),
            Some("Apache Cassandra")
        );
        assert!(parse(&OPTIONS).is_none(), "an echo is a request, not a response");
    }
}
