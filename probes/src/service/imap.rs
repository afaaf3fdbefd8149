//! IMAP (RFC 9051): the greeting is an untagged `* OK` (or `* PREAUTH`), usually
//! with a capability list that names IMAP4rev1/IMAP4rev2.

use super::pop3::mail_greeting;
use super::Found;

/// Match an IMAP greeting.
pub fn banner(b: &[u8]) -> Option<Found> {
    mail_greeting(b, "imap", |line| {
        (line.starts_with("* OK") || line.starts_with("* PREAUTH"))
            && (line.contains("IMAP4") || line.to_ascii_lowercase().contains("imap"))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        let f = banner(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS] Dovecot (Debian) ready.\r\n")
            .unwrap();
        assert_eq!((f.service, f.product.as_deref()), ("imap", Some("Dovecot")));
        assert!(banner(b"* OK hello\r\n").is_none(), "too vague");
    }
}
