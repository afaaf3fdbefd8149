//! Modbus/TCP: Read Device Identification (function 0x2b, MEI 0x0e) in an MBAP
//! frame. A device answers with the same transaction id and protocol 0, either the
//! identification objects (vendor, product code, revision) or an exception.

use super::{Conn, Found, Reply};

/// MBAP (transaction 0x7077, protocol 0, length 5, unit 0) + PDU 2b 0e 01 00.
pub const REQUEST: [u8; 11] = [0x70, 0x77, 0, 0, 0, 5, 0, 0x2b, 0x0e, 0x01, 0x00];

fn complete(b: &[u8]) -> bool {
    b.len() >= 6 && b.len() >= 6 + usize::from(u16::from_be_bytes([b[4], b[5]]))
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    if !complete(reply) || reply[..4] != [0x70, 0x77, 0, 0] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([reply[4], reply[5]]));
    let pdu = reply.get(7..6 + len)?;
    match pdu {
        // Exception: function | 0x80, one code byte.
        [0xab, _code] => Some(Found::new("modbus")),
        [0x2b, 0x0e, _code, _conformity, _more, _next, count, objects @ ..] => {
            let mut at = 0;
            let mut fields: [Option<String>; 3] = [None, None, None];
            for _ in 0..*count {
                let id = usize::from(*objects.get(at)?);
                let l = usize::from(*objects.get(at + 1)?);
                let v = objects.get(at + 2..at + 2 + l)?;
                if id < 3 {
                    fields[id] = Some(String::from_utf8_lossy(v).trim().to_string());
                }
                at += 2 + l;
            }
            let [vendor, code, revision] = fields;
            let product = [vendor, code].into_iter().flatten().collect::<Vec<_>>().join(" ");
            Some(Found::new("modbus").product(product).version(revision))
        }
        _ => None,
    }
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
        assert!(parse(&REQUEST).is_none(), "an echo is too short to be an answer");
        assert!(parse(&[0x70, 0x77, 0, 0, 0, 3, 1, 0xab, 0x01]).is_some());
        let mut r = vec![0x70, 0x77, 0, 0, 0, 0, 1, 0x2b, 0x0e, 1, 1, 0, 0, 2, 0, 4];
        r.extend_from_slice(b"ACME");
        r.extend_from_slice(&[2, 3]);
        r.extend_from_slice(b"1.2");
        let len = (r.len() - 6) as u16;
        r[4..6].copy_from_slice(&len.to_be_bytes());
        let f = parse(&r).unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("ACME"), Some("1.2"))
        );
    }
}
