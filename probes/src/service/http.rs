//! HTTP/1.x (RFC 9112): `GET /`; the status line says it is HTTP, the `Server`
//! header often names the product and version.

use std::future::Future;
use std::pin::Pin;

use super::{product_version, Conn, Found, WireError};

/// Parse a response head: whether it is HTTP, and the `Server` header.
pub fn parse(head: &[u8]) -> Option<Found> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next()?;
    let mut parts = status.split_whitespace();
    let proto = parts.next()?;
    let code = parts.next()?;
    if !proto.starts_with("HTTP/1.") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let server = lines.take_while(|l| !l.is_empty()).find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("server"))
            .map(|(_, v)| v.trim().to_string())
    });
    let (product, version) = server
        .as_deref()
        .and_then(|s| s.split_whitespace().next())
        .map_or((None, None), |token| product_version(token, '/'));
    Some(Found {
        service: "http",
        product,
        version,
    })
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Pin<Box<dyn Future<Output = Result<Option<Found>, WireError>> + Send + '_>> {
    Box::pin(async move {
        conn.send(b"GET / HTTP/1.0\r\nHost: portwatch\r\nUser-Agent: portwatch\r\nAccept: */*\r\n\r\n")
            .await?;
        let head = conn
            .read_until(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
            .await?;
        Ok(parse(head))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let f = parse(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n\r\n").unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("nginx"), Some("1.22.1"))
        );
        let f = parse(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap();
        assert_eq!((f.service, f.product), ("http", None));
        assert!(parse(b"+PONG\r\n").is_none());
        assert!(parse(b"HTTP/1.1 2000 x\r\n\r\n").is_none());
    }
}
