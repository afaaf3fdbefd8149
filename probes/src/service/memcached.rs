//! memcached (text protocol): `version` is answered `VERSION <x.y.z>`.

use super::{Conn, Found, Reply};

/// Parse the reply to `version`.
pub fn parse(reply: &[u8]) -> Option<Found> {
    let line = super::wire::first_line(reply);
    let v = line.strip_prefix("VERSION ")?;
    Some(
        Found::new("memcached")
            .product("memcached")
            .version(Some(v.to_string())),
    )
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    Box::pin(async move {
        Ok(parse(
            conn.exchange(b"version\r\n", |b| b.ends_with(b"\r\n")).await?,
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            parse(b"VERSION 1.6.18\r\n").unwrap().version.as_deref(),
            Some("1.6.18")
        );
        assert!(parse(b"ERROR\r\n").is_none());
    }
}
