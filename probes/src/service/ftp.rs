//! FTP (RFC 959): the server greets with a `220` reply; some servers name
//! themselves in it.

use super::Found;

/// Match an FTP greeting.
pub fn banner(bytes: &[u8]) -> Option<Found> {
    let line = super::wire::first_line(bytes);
    // vsftpd refuses with `500 OOPS: vsftpd: ...` when misconfigured: still vsftpd.
    if line.starts_with("500 OOPS: vsftpd") {
        return Some(Found::new("ftp").product("vsftpd"));
    }
    let text = line.strip_prefix("220")?;
    if !(text.starts_with(' ') || text.starts_with('-')) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    // An SMTP greeting is also a 220; it says so.
    if lower.contains("smtp") || lower.contains("mail") {
        return None;
    }
    let (product, version) = if let Some(i) = text.find("vsFTPd") {
        (
            "vsftpd",
            text[i + 6..]
                .trim()
                .trim_matches(|c| c == '(' || c == ')')
                .split_whitespace()
                .next(),
        )
    } else if let Some(i) = text.find("ProFTPD") {
        ("ProFTPD", text[i + 7..].split_whitespace().next())
    } else if text.contains("Pure-FTPd") {
        ("Pure-FTPd", None) // its greeting carries no version
    } else if lower.contains("ftp") {
        ("", None)
    } else {
        return None;
    };
    Some(Found {
        service: "ftp",
        product: Some(product.to_string()).filter(|p| !p.is_empty()),
        version: version
            .map(|v| {
                v.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.')
                    .to_string()
            })
            .filter(|v| !v.is_empty()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        let f = banner(b"220 (vsFTPd 3.0.3)\r\n").unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("vsftpd"), Some("3.0.3"))
        );
        let f = banner(b"220 ProFTPD 1.3.8 Server (Debian) [::1]\r\n").unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("ProFTPD"), Some("1.3.8"))
        );
        assert_eq!(banner(b"220 FTP server ready\r\n").unwrap().service, "ftp");
        assert!(banner(b"220 mail.example.com ESMTP Postfix\r\n").is_none());
        assert!(banner(b"SSH-2.0-OpenSSH_9.2\r\n").is_none());
    }
}
