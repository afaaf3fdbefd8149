//! SMTP (RFC 5321 §4.2): the server greets with `220 domain ESMTP text`.

use super::Found;

/// Match an SMTP greeting.
pub fn banner(bytes: &[u8]) -> Option<Found> {
    let line = super::wire::first_line(bytes);
    let text = line.strip_prefix("220")?;
    if !text.contains("SMTP") {
        return None;
    }
    let product = [
        "Postfix",
        "Exim",
        "Sendmail",
        "OpenSMTPD",
        "Microsoft ESMTP MAIL Service",
    ]
    .into_iter()
    .find(|p| text.contains(p))
    .map(|p| p.to_string());
    let version = product.as_deref().filter(|p| *p == "Exim").and_then(|_| {
        let after = &text[text.find("Exim")? + 4..];
        after.split_whitespace().next().map(str::to_string)
    });
    Some(Found {
        service: "smtp",
        product,
        version,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        let f = banner(b"220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n").unwrap();
        assert_eq!(f.product.as_deref(), Some("Postfix"));
        let f = banner(b"220 host ESMTP Exim 4.96 Mon, 1 Jan 2026\r\n").unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("Exim"), Some("4.96"))
        );
        assert!(banner(b"220 (vsFTPd 3.0.3)\r\n").is_none());
    }
}
