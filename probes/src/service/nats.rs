//! NATS: the server opens with `INFO {json}`, which names the server and version.

use super::Found;

/// Match a NATS INFO line.
pub fn banner(b: &[u8]) -> Option<Found> {
    let line = super::wire::first_line(b);
    let json: serde_json::Value = serde_json::from_str(line.strip_prefix("INFO ")?).ok()?;
    json.get("server_id")?;
    let version = json.get("version").and_then(|v| v.as_str()).map(str::to_string);
    Some(Found::new("nats").product("NATS Server").version(version))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn info() {
        let f = banner(b"INFO {\"server_id\":\"NABC\",\"version\":\"2.10.7\",\"go\":\"go1.21\",\"max_payload\":1048576}\r\n").unwrap();
        assert_eq!(f.version.as_deref(), Some("2.10.7"));
        assert!(banner(b"INFO hello\r\n").is_none());
    }
}
