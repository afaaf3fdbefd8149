//! VNC / RFB (RFC 6143): the server opens with `RFB 003.008\n`; the version is the
//! protocol's.

use super::Found;

/// Match an RFB ProtocolVersion message.
pub fn banner(b: &[u8]) -> Option<Found> {
    let m = b.get(..12)?;
    if &m[..4] != b"RFB " || m[7] != b'.' || m[11] != b'\n' {
        return None;
    }
    let digits = |r: &[u8]| -> Option<u32> { std::str::from_utf8(r).ok()?.parse().ok() };
    let (major, minor) = (digits(&m[4..7])?, digits(&m[8..11])?);
    Some(
        Found::new("vnc")
            .product("VNC")
            .version(Some(format!("protocol {major}.{minor}"))),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            banner(b"RFB 003.008\n").unwrap().version.as_deref(),
            Some("protocol 3.8")
        );
        assert!(banner(b"RFB 003.00").is_none());
        assert!(banner(b"RFB xyz.008\n").is_none());
    }
}
