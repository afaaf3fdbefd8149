//! rsync daemon: the server greets with `@RSYNCD: <protocol>`.

use super::Found;

/// Match an rsync daemon greeting.
pub fn banner(b: &[u8]) -> Option<Found> {
    let line = super::wire::first_line(b);
    let version = line.strip_prefix("@RSYNCD: ")?;
    version
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        .then(|| {
            Found::new("rsync")
                .product("rsync")
                .version(Some(format!("protocol {version}")))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert_eq!(
            banner(b"@RSYNCD: 31.0\n").unwrap().version.as_deref(),
            Some("protocol 31.0")
        );
        assert!(banner(b"@RSYNCD: EXIT\n").is_none());
    }
}
