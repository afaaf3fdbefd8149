//! `[control]` as the block controller is told it: the driver, its nftables
//! table and hook, the longest block, the ports no block may cover.

use std::time::Duration;

/// A `[control] protect` entry, checked: where (none: every address of the machine
/// that applies blocks) and which port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectEntry {
    /// The addresses; none: this machine's.
    pub net: Option<ipnet::IpNet>,
    /// The port.
    pub port: u16,
    /// As written.
    pub text: String,
}

impl ProtectEntry {
    /// Parse `22`, `10.0.0.5:443`, `10.0.0.0/24:8080` or `[2001:db8::1]:22`.
    pub fn parse(text: &str) -> Result<ProtectEntry, String> {
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port `{p}`: 1 to 65535"))
        };
        let (net, p) = match text.rsplit_once(':') {
            None => (None, text),
            Some((addr, p)) => {
                let addr = addr.trim_start_matches('[').trim_end_matches(']');
                let net = portwatch_projections::approvals::parse_target(addr)?;
                (Some(net), p)
            }
        };
        Ok(ProtectEntry {
            net,
            port: port(p)?,
            text: text.to_string(),
        })
    }
}

/// How blocks are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlDriver {
    /// nftables on this machine.
    Nftables,
    /// A command.
    Command(Vec<String>),
    /// An HTTP API.
    Http(String),
}

/// Checked `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// Render and check only.
    pub dry_run: bool,
    /// The driver.
    pub driver: ControlDriver,
    /// nftables table.
    pub table: String,
    /// nftables hook.
    pub hook: String,
    /// Longest block.
    pub max_duration: Duration,
    /// Ports no block may cover (the API's own added by the binary).
    pub protect: Vec<ProtectEntry>,
    /// How long a silent leader keeps the lease.
    pub lease_timeout: Duration,
}
