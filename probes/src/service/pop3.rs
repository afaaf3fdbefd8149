//! POP3 (RFC 1939): the greeting is `+OK` and free text, which often names the
//! server (`+OK Dovecot ready.`).

use super::Found;

/// Products that name themselves in POP3 and IMAP greetings.
pub(crate) const MAIL_PRODUCTS: &[&str] = &[
    "Dovecot",
    "Cyrus",
    "Courier",
    "Zimbra",
    "Microsoft Exchange",
    "qpopper",
];

pub(crate) fn mail_product(text: &str) -> Option<&'static str> {
    MAIL_PRODUCTS.iter().copied().find(|p| text.contains(p))
}

/// A complete mail-service greeting line that `is_greeting` accepts, with the
/// product it names.
pub(crate) fn mail_greeting(b: &[u8], service: &'static str, is_greeting: fn(&str) -> bool) -> Option<Found> {
    let line = super::wire::first_line(b);
    if !b.contains(&b'\n') || !is_greeting(&line) {
        return None;
    }
    let found = Found::new(service);
    Some(match mail_product(&line) {
        Some(p) => found.product(p),
        None => found,
    })
}

/// Match a POP3 greeting.
pub fn banner(b: &[u8]) -> Option<Found> {
    mail_greeting(b, "pop3", |line| line.starts_with("+OK"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert_eq!(
            banner(b"+OK Dovecot (Debian) ready.\r\n")
                .unwrap()
                .product
                .as_deref(),
            Some("Dovecot")
        );
        assert_eq!(banner(b"+OK POP3 server ready\r\n").unwrap().service, "pop3");
        assert!(banner(b"+PONG\r\n").is_none());
        assert!(banner(b"+OK").is_none(), "incomplete line");
    }
}
