//! The nftables driver: one table of portwatch's own with a set of blocked
//! (address, protocol, port) triples, dropped by one rule on the configured hook.
//! Each block is a set element with a timeout, so the kernel ends it on its own
//! even if portwatch is gone; every batch is checked with `nft -c` first.

use std::io::Write;
use std::process::{Command, Stdio};

use portwatch_projections::BlockRequest;

/// Where the rules go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nftables {
    /// The `inet` table portwatch owns.
    pub table: String,
    /// `input` (a firewall on the host itself) or `forward` (on a gateway).
    pub hook: String,
}

impl Nftables {
    fn set_of(&self, b: &BlockRequest) -> &'static str {
        if b.ip.is_ipv4() {
            "blocked4"
        } else {
            "blocked6"
        }
    }

    /// The table, its two sets and its one chain, declared idempotently (the chain
    /// is flushed and its two rules added again, so repeating it adds nothing).
    fn setup(&self) -> String {
        let t = &self.table;
        let h = &self.hook;
        format!(
            "table inet {t} {{\n  set blocked4 {{ type ipv4_addr . inet_proto . inet_service; flags timeout; }}\n  set blocked6 {{ type ipv6_addr . inet_proto . inet_service; flags timeout; }}\n  chain {h} {{ type filter hook {h} priority -10; policy accept; }}\n}}\nflush chain inet {t} {h}\nadd rule inet {t} {h} ip daddr . meta l4proto . th dport @blocked4 drop\nadd rule inet {t} {h} ip6 daddr . meta l4proto . th dport @blocked6 drop\n"
        )
    }

    fn element(b: &BlockRequest) -> String {
        format!("{} . {} . {}", b.ip, b.proto.as_str(), b.port)
    }

    /// The batch that applies `b` for `secs` seconds.
    pub fn render_add(&self, b: &BlockRequest, secs: u64) -> String {
        format!(
            "{}add element inet {} {} {{ {} timeout {secs}s }}\n",
            self.setup(),
            self.table,
            self.set_of(b),
            Self::element(b)
        )
    }

    /// The batch that removes `b`.
    pub fn render_remove(&self, b: &BlockRequest) -> String {
        format!(
            "delete element inet {} {} {{ {} }}\n",
            self.table,
            self.set_of(b),
            Self::element(b)
        )
    }

    /// Check `b` with `nft -c`, then (unless `dry_run`) apply it; the batch.
    pub fn apply(&self, b: &BlockRequest, secs: u64, dry_run: bool) -> Result<String, String> {
        let batch = self.render_add(b, secs);
        nft(&["-c", "-f", "-"], &batch).map_err(|e| format!("nft -c refused the rule set: {e}"))?;
        if !dry_run {
            nft(&["-f", "-"], &batch)?;
        }
        Ok(batch)
    }

    /// Remove `b`'s element (already gone, by its timeout, is fine).
    pub fn remove(&self, b: &BlockRequest) -> Result<(), String> {
        match nft(&["-f", "-"], &self.render_remove(b)) {
            Ok(()) => Ok(()),
            Err(e) if e.contains("No such file or directory") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Run `nft ARGS` with `input` on stdin.
fn nft(args: &[&str], input: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (Debian package nftables): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().replace('\n', " "))
    }
}

#[cfg(test)]
mod tests {
    use portwatch_events::Proto;

    use super::*;

    #[test]
    fn blocks_render_as_set_elements_with_a_timeout() {
        let nft = Nftables {
            table: "portwatch".into(),
            hook: "input".into(),
        };
        let b = BlockRequest {
            block_id: "bk_1".into(),
            ip: "203.0.113.7".parse().expect("ip"),
            proto: Proto::Tcp,
            port: 6379,
            episode_id: "e1".into(),
            reason: "x".into(),
            duration_secs: 600,
        };
        let add = nft.render_add(&b, 600);
        assert!(add.starts_with("table inet portwatch {"), "{add}");
        assert!(add.contains("flush chain inet portwatch input"), "{add}");
        assert!(add.contains("type filter hook input priority -10"), "{add}");
        assert!(
            add.ends_with("add element inet portwatch blocked4 { 203.0.113.7 . tcp . 6379 timeout 600s }\n"),
            "{add}"
        );
        let v6 = BlockRequest {
            ip: "2001:db8::7".parse().expect("ip"),
            ..b.clone()
        };
        assert_eq!(
            nft.render_remove(&v6),
            "delete element inet portwatch blocked6 { 2001:db8::7 . tcp . 6379 }\n"
        );
    }
}
