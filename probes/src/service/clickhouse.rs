//! ClickHouse, both interfaces.
//!
//! - Native protocol (TCP 9000): a client `Hello` (packet 0: client name, version,
//!   revision, database, user, password) is answered with the server's `Hello`
//!   (packet 0: `ClickHouse`, major, minor, revision, and by revision: time zone,
//!   display name, patch) or an `Exception` (packet 2, `DB::Exception`) when the
//!   default user may not log in.
//! - HTTP (8123): the root answers `Ok.`; responses carry `X-ClickHouse-*` headers
//!   in recent releases; `SELECT version()` answers the version where the default
//!   user needs no password.

use super::{Conn, Found, Reply};

/// The revision this client announces (patch numbers are sent from 54401).
const CLIENT_REVISION: u64 = 54401;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// The client `Hello`: user `default`, no password.
pub fn hello() -> Vec<u8> {
    let mut out = Vec::new();
    varint(0, &mut out);
    string("portwatch", &mut out);
    varint(1, &mut out);
    varint(0, &mut out);
    varint(CLIENT_REVISION, &mut out);
    string("", &mut out);
    string("default", &mut out);
    string("", &mut out);
    out
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.varint()?).ok().filter(|&l| l < 4096)?;
        let s = self.b.get(self.at..self.at + len)?;
        self.at += len;
        Some(String::from_utf8_lossy(s).to_string())
    }
}

/// Parse the server's answer to `Hello`.
pub fn parse_native(reply: &[u8]) -> Option<Found> {
    let mut r = Reader { b: reply, at: 0 };
    match r.varint()? {
        0 => {
            let name = r.string()?;
            if !name.contains("ClickHouse") {
                return None;
            }
            let (major, minor, revision) = (r.varint()?, r.varint()?, r.varint()?);
            let revision = revision.min(CLIENT_REVISION);
            if revision >= 54058 {
                r.string()?; // time zone
            }
            if revision >= 54372 {
                r.string()?; // display name
            }
            let patch = if revision >= 54401 {
                Some(r.varint()?)
            } else {
                None
            };
            let version = match patch {
                Some(p) => format!("{major}.{minor}.{p}"),
                None => format!("{major}.{minor}"),
            };
            Some(
                Found::new("clickhouse")
                    .product("ClickHouse")
                    .version(Some(version)),
            )
        }
        2 => {
            // Exception: code (UInt32 LE), name, message, stack trace, nested.
            r.at += 4;
            (r.string()?.starts_with("DB::Exception")).then(|| Found::new("clickhouse").product("ClickHouse"))
        }
        _ => None,
    }
}

fn native_complete(b: &[u8]) -> bool {
    parse_native(b).is_some()
}

/// The native-protocol conversation.
pub fn talk_native(conn: &mut Conn) -> Reply<'_> {
    super::request_reply(conn, hello(), native_complete, parse_native)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn native() {
        let mut reply = Vec::new();
        varint(0, &mut reply);
        string("ClickHouse", &mut reply);
        varint(18, &mut reply);
        varint(16, &mut reply);
        varint(54413, &mut reply);
        string("UTC", &mut reply);
        string("host", &mut reply);
        varint(1, &mut reply);
        assert_eq!(parse_native(&reply).unwrap().version.as_deref(), Some("18.16.1"));
        assert!(parse_native(&hello()).is_none(), "an echo is the client's hello");
        let mut exc = vec![2, 0xc1, 0, 0, 0];
        string("DB::Exception", &mut exc);
        assert!(parse_native(&exc).is_some());
    }
}
