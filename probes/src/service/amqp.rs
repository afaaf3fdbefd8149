//! AMQP 0-9-1 (RabbitMQ and others): after the protocol header the server sends
//! `Connection.Start` whose server-properties table names `product` and `version`.
//! A server of another AMQP version answers with its own protocol header instead.

use super::{Conn, Found, Reply};

/// The AMQP 0-9-1 protocol header.
pub const HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

fn complete(b: &[u8]) -> bool {
    if b.starts_with(b"AMQP") {
        return b.len() >= 8;
    }
    b.len() >= 7 && b.len() >= 8 + u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize
}

/// Long strings of the field table at the start of `t`, by name (other values skipped
/// where their size is known; parsing stops at a type it does not know).
fn table_strings(t: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(len) = t
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
    else {
        return out;
    };
    let table = &t[4..(4 + len).min(t.len())];
    let mut at = 0;
    while at < table.len() {
        let Some(&nlen) = table.get(at) else { break };
        let Some(name) = table.get(at + 1..at + 1 + usize::from(nlen)) else {
            break;
        };
        at += 1 + usize::from(nlen);
        let Some(&kind) = table.get(at) else { break };
        at += 1;
        let size = match kind {
            b'S' | b'F' | b'A' | b'x' => {
                let Some(l) = table.get(at..at + 4) else { break };
                let l = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                if kind == b'S' {
                    if let Some(v) = table.get(at + 4..at + 4 + l) {
                        out.push((
                            String::from_utf8_lossy(name).to_string(),
                            String::from_utf8_lossy(v).to_string(),
                        ));
                    }
                }
                4 + l
            }
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'l' | b'd' | b'T' => 8,
            b'D' => 5,
            b'V' => 0,
            _ => break,
        };
        at += size;
    }
    out
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if reply.starts_with(b"AMQP") {
        // A protocol header back: the server speaks another AMQP version. An echo of
        // ours is not an answer.
        return (reply.len() >= 8 && &reply[..8] != HEADER).then(|| Found::new("amqp"));
    }
    // Method frame on channel 0: Connection (10) . Start (10), version 0-9.
    if reply.len() < 11 + 4 || reply[0] != 1 || reply[1..3] != [0, 0] || reply[7..11] != [0, 10, 0, 10] {
        return None;
    }
    let props = table_strings(reply.get(13..)?);
    let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let found = Found::new("amqp");
    Some(match get("product") {
        Some(p) => found.product(p).version(get("version")),
        None => found,
    })
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    super::request_reply(conn, HEADER.to_vec(), complete, parse)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_start() {
        let mut table = Vec::new();
        for (k, v) in [("product", "RabbitMQ"), ("version", "3.10.8")] {
            table.push(k.len() as u8);
            table.extend_from_slice(k.as_bytes());
            table.push(b'S');
            table.extend_from_slice(&(v.len() as u32).to_be_bytes());
            table.extend_from_slice(v.as_bytes());
        }
        table.extend_from_slice(&[4, b'c', b'a', b'p', b's', b't', 1]);
        let mut payload = vec![0, 10, 0, 10, 0, 9];
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        let mut frame = vec![1, 0, 0];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(0xce);
        let f = parse(&frame).unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("RabbitMQ"), Some("3.10.8"))
        );
        assert!(parse(HEADER).is_none(), "an echo");
        assert!(
            parse(b"AMQP\x03\x01\x00\x00").is_some(),
            "AMQP 1.0 answers its own header"
        );
    }
}
