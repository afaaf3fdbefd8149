//! MQTT 3.1.1: `CONNECT` is answered with `CONNACK` (0x20, length 2, return code
//! 0..=5). When the broker lets the probe in, it subscribes to `$SYS/broker/version`,
//! which Mosquitto and others publish with their name and version.

use super::{Conn, Found, Reply};

/// CONNECT: protocol MQTT level 4, clean session, keep-alive 10 s, client `portwatch`.
pub const CONNECT: [u8; 23] = [
    0x10, 21, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 9, b'p', b'o', b'r', b't', b'w', b'a', b't',
    b'c', b'h',
];

const TOPIC: &[u8] = b"$SYS/broker/version";

fn subscribe() -> Vec<u8> {
    let mut m = vec![0x82, (2 + 2 + TOPIC.len() + 1) as u8, 0, 1, 0, TOPIC.len() as u8];
    m.extend_from_slice(TOPIC);
    m.push(0);
    m
}

/// Whether `b` is a CONNACK; `Some(accepted)`.
pub fn connack(b: &[u8]) -> Option<bool> {
    match b {
        [0x20, 2, 0 | 1, rc @ 0..=5, ..] => Some(*rc == 0),
        _ => None,
    }
}

/// Packets (first byte, body) in `b`, as far as complete.
fn packets(b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let (mut len, mut mult, mut i) = (0usize, 1usize, at + 1);
        loop {
            let Some(&byte) = b.get(i) else { return out };
            len += usize::from(byte & 0x7f) * mult;
            mult *= 128;
            i += 1;
            if byte & 0x80 == 0 || mult > 128 * 128 * 128 {
                break;
            }
        }
        let Some(body) = b.get(i..i + len) else { return out };
        out.push((b[at], body));
        at = i + len;
    }
    out
}

/// Whether a SUBACK is among `b`'s packets.
fn suback(b: &[u8]) -> bool {
    packets(b).iter().any(|(kind, _)| *kind == 0x90)
}

/// The product and version in a `$SYS/broker/version` PUBLISH among `b`'s packets.
pub fn version_publish(b: &[u8]) -> Option<(String, Option<String>)> {
    packets(b).into_iter().find_map(|(kind, body)| {
        if kind & 0xf0 != 0x30 {
            return None;
        }
        let tlen = usize::from(u16::from_be_bytes(body.get(..2)?.try_into().ok()?));
        let skip = if kind & 0x06 != 0 { 2 } else { 0 }; // packet id at QoS > 0
        let payload = String::from_utf8_lossy(body.get(2 + tlen + skip..)?).to_string();
        // "mosquitto version 2.0.11"
        let mut words = payload.split_whitespace();
        let product = words.next()?.to_string();
        let version = match (words.next(), words.next()) {
            (Some("version"), Some(v)) => Some(v.to_string()),
            _ => None,
        };
        Some((product, version))
    })
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    Box::pin(async move {
        let Some(accepted) = connack(conn.exchange(&CONNECT, |b| b.len() >= 4).await?) else {
            return Ok(None);
        };
        let mut found = Found::new("mqtt");
        if accepted {
            let done = |b: &[u8]| version_publish(b).is_some();
            let mut publish = conn
                .exchange(&subscribe(), done)
                .await
                .ok()
                .and_then(version_publish);
            if publish.is_none() && suback(conn.buffered()) {
                // The subscription was acknowledged but the retained message is late
                // (a busy broker): one more read deadline for it.
                publish = conn.read_until(done).await.ok().and_then(version_publish);
            }
            if let Some((product, version)) = publish {
                let product = if product.eq_ignore_ascii_case("mosquitto") {
                    "Mosquitto".to_string()
                } else {
                    product
                };
                found = found.product(product).version(version);
            }
            let _ = conn.send(&[0xe0, 0]).await; // DISCONNECT
        }
        Ok(Some(found))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(connack(&[0x20, 2, 0, 0]), Some(true));
        assert_eq!(connack(&[0x20, 2, 0, 5]), Some(false));
        assert_eq!(connack(&CONNECT), None, "an echo");
        let mut b = vec![0x90, 3, 0, 1, 0]; // SUBACK
        assert!(suback(&b) && !suback(&CONNECT));
        let payload = b"mosquitto version 2.0.11";
        b.push(0x30);
        b.push((2 + TOPIC.len() + payload.len()) as u8);
        b.extend_from_slice(&[0, TOPIC.len() as u8]);
        b.extend_from_slice(TOPIC);
        b.extend_from_slice(payload);
        assert_eq!(
            version_publish(&b),
            Some(("mosquitto".to_string(), Some("2.0.11".to_string())))
        );
    }
}
