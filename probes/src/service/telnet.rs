//! Telnet (RFC 854): servers open with option negotiation, `IAC` (255) followed by
//! `WILL`/`WONT`/`DO`/`DONT` (251..=254) and an option code.

use super::Found;

/// Match a banner that starts with a Telnet negotiation.
pub fn banner(b: &[u8]) -> Option<Found> {
    match b {
        [255, 251..=254, _, ..] => Some(Found::new("telnet")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert!(banner(&[255, 253, 24, 255, 253, 32]).is_some());
        assert!(banner(b"login: ").is_none());
        assert!(banner(&[255, 1]).is_none());
    }
}
