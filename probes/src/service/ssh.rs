//! SSH (RFC 4253 §4.2): the server sends `SSH-protoversion-softwareversion SP comments`.

use super::{product_version, Found};

/// Match an SSH identification string.
pub fn banner(bytes: &[u8]) -> Option<Found> {
    let line = super::wire::first_line(bytes);
    let rest = line.strip_prefix("SSH-")?;
    let (proto, software) = rest.split_once('-')?;
    if !matches!(proto, "2.0" | "1.99" | "1.5") {
        return None;
    }
    let software = software.split_whitespace().next().unwrap_or_default();
    let (product, version) = product_version(software, '_');
    Some(Found {
        service: "ssh",
        product,
        version,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn openssh_and_others() {
        let f = banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n").unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("OpenSSH"), Some("9.2p1"))
        );
        let f = banner(b"SSH-2.0-dropbear_2022.83\r\n").unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("dropbear"), Some("2022.83"))
        );
        assert!(banner(b"SSH-9.9-x\r\n").is_none());
        assert!(banner(b"220 ftp ready\r\n").is_none());
    }
}
