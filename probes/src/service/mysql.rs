//! MySQL / MariaDB: the server speaks first with a handshake packet (3-byte length,
//! sequence 0, protocol version 10, NUL-terminated server version), or with an error
//! packet (0xff, e.g. "Host ... is not allowed to connect") when it refuses the peer.
//! MariaDB announces itself as `5.5.5-<version>-MariaDB...`.

use super::Found;

/// Match a server greeting.
pub fn banner(b: &[u8]) -> Option<Found> {
    if b.len() < 5 {
        return None;
    }
    let len = usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16;
    let payload = b.get(4..4 + len)?;
    if b[3] != 0 || len < 3 {
        return None;
    }
    match payload[0] {
        10 => {
            let end = payload[1..].iter().position(|&c| c == 0)?;
            let version = std::str::from_utf8(&payload[1..1 + end]).ok()?;
            if version.is_empty() || !version.bytes().next()?.is_ascii_digit() {
                return None;
            }
            Some(parse_version(version))
        }
        0xff => {
            let text = String::from_utf8_lossy(&payload[3..]);
            (text.contains("MySQL") || text.contains("MariaDB")).then(|| {
                let product = if text.contains("MariaDB") {
                    "MariaDB"
                } else {
                    "MySQL"
                };
                Found::new("mysql").product(product)
            })
        }
        _ => None,
    }
}

fn parse_version(v: &str) -> Found {
    let v = v
        .strip_prefix("5.5.5-")
        .filter(|rest| rest.contains("MariaDB"))
        .unwrap_or(v);
    let number: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let product = if v.contains("MariaDB") { "MariaDB" } else { "MySQL" };
    Found::new("mysql").product(product).version(Some(number))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![payload.len() as u8, 0, 0, 0];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn greetings() {
        let f = banner(&packet(b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x01\x02\x03")).unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("MariaDB"), Some("10.11.6"))
        );
        let f = banner(&packet(b"\x0a8.0.35\x00abc")).unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("MySQL"), Some("8.0.35"))
        );
        let f = banner(&packet(
            b"\xff\x6a\x04Host '10.0.0.1' is not allowed to connect to this MariaDB server",
        ))
        .unwrap();
        assert_eq!(f.product.as_deref(), Some("MariaDB"));
        assert!(banner(&packet(b"\x0a8.0")).is_none(), "unterminated version");
        assert!(banner(b"SSH-2.0-OpenSSH_9.2\r\n").is_none());
    }
}
