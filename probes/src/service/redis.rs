//! Redis (RESP): the client sends `PING`; a server answers `+PONG`, or `-NOAUTH` /
//! `-ERR` mentioning authentication when it has a password. `INFO server` then
//! tells the version.

use std::future::Future;
use std::pin::Pin;

use super::{Conn, Found, WireError};

fn resp_done(b: &[u8]) -> bool {
    b.ends_with(b"\r\n")
}

/// Whether a reply to `PING` is a Redis-protocol server's (and needs auth).
pub fn classify_ping(reply: &[u8]) -> Option<bool> {
    if reply.starts_with(b"+PONG") {
        return Some(false);
    }
    let text = String::from_utf8_lossy(reply);
    (text.starts_with("-NOAUTH") || (text.starts_with("-ERR") && text.contains("auth"))).then_some(true)
}

/// The version in an `INFO server` reply.
pub fn info_version(reply: &[u8]) -> Option<String> {
    String::from_utf8_lossy(reply)
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(|v| v.trim().to_string()))
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Pin<Box<dyn Future<Output = Result<Option<Found>, WireError>> + Send + '_>> {
    Box::pin(async move {
        conn.send(b"PING\r\n").await?;
        let needs_auth = match classify_ping(conn.read_until(resp_done).await?) {
            None => return Ok(None),
            Some(a) => a,
        };
        let mut version = None;
        if !needs_auth {
            conn.clear();
            conn.send(b"INFO server\r\n").await?;
            let reply = conn
                .read_until(|b| b.windows(2).filter(|w| w == b"\r\n").count() > 3 && b.ends_with(b"\r\n\r\n"))
                .await?;
            version = info_version(reply);
        }
        Ok(Some(Found {
            service: "redis",
            product: Some("Redis".into()),
            version,
        }))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(classify_ping(b"+PONG\r\n"), Some(false));
        assert_eq!(classify_ping(b"-NOAUTH Authentication required.\r\n"), Some(true));
        assert_eq!(classify_ping(b"HTTP/1.1 400 Bad Request\r\n"), None);
        assert_eq!(
            info_version(b"$300\r\n# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n").as_deref(),
            Some("7.0.15")
        );
    }
}
