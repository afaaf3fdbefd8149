//! ZooKeeper: the four-letter command `srvr` is answered with `Zookeeper version:
//! ...`, or, where four-letter words are not whitelisted, with a sentence saying so.

use super::{Conn, Found, Reply};

/// Parse the reply to `srvr`.
pub fn parse(reply: &[u8]) -> Option<Found> {
    let text = String::from_utf8_lossy(reply);
    if let Some(rest) = text.strip_prefix("Zookeeper version: ") {
        let v: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        return Some(
            Found::new("zookeeper")
                .product("Apache ZooKeeper")
                .version(Some(v)),
        );
    }
    text.starts_with("srvr is not executed because it is not in the whitelist")
        .then(|| Found::new("zookeeper").product("Apache ZooKeeper"))
}

/// The conversation (the server closes after answering).
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    Box::pin(async move { Ok(parse(conn.exchange(b"srvr", |_| false).await?)) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let f = parse(b"Zookeeper version: 3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f, built on 2022-02-25\nLatency min/avg/max: 0/0.0/0\n").unwrap();
        assert_eq!(f.version.as_deref(), Some("3.8.0"));
        assert!(parse(b"srvr is not executed because it is not in the whitelist.\n").is_some());
        assert!(parse(b"srvr").is_none(), "an echo is not ZooKeeper");
    }
}
