//! The drivers a block can be applied with: nftables on this machine, a configured
//! command, or an HTTP call to a firewall's or agent's API.

use portwatch_events::redact;
use portwatch_projections::BlockRequest;

use super::nftables::Nftables;
use super::{ControlDriver, ControlSettings};

/// A driver, ready to use.
#[derive(Debug, Clone)]
pub enum Driver {
    /// nftables here.
    Nftables(Nftables),
    /// `argv` with `{action}`, `{ip}`, `{proto}`, `{port}`, `{seconds}`, `{block_id}`
    /// filled in; `{action}` is `block` or `unblock`.
    Command(Vec<String>),
    /// POST `{"action","block_id","ip","proto","port","seconds"}` as JSON.
    Http(String, reqwest::Client),
}

impl Driver {
    /// The driver `settings` name.
    pub fn new(settings: &ControlSettings) -> Result<Self, String> {
        Ok(match &settings.driver {
            ControlDriver::Nftables => Driver::Nftables(Nftables {
                table: settings.table.clone(),
                hook: settings.hook.clone(),
            }),
            ControlDriver::Command(argv) => Driver::Command(argv.clone()),
            ControlDriver::Http(url) => Driver::Http(
                url.clone(),
                portwatch_trust::http_client(&[]).map_err(|e| e.to_string())?,
            ),
        })
    }

    fn argv(template: &[String], action: &str, b: &BlockRequest) -> Vec<String> {
        template
            .iter()
            .map(|a| {
                a.replace("{action}", action)
                    .replace("{ip}", &b.ip.to_string())
                    .replace("{proto}", b.proto.as_str())
                    .replace("{port}", &b.port.to_string())
                    .replace("{seconds}", &b.duration_secs.to_string())
                    .replace("{block_id}", &b.block_id)
            })
            .collect()
    }

    fn body(action: &str, b: &BlockRequest) -> serde_json::Value {
        serde_json::json!({
            "action": action, "block_id": b.block_id, "ip": b.ip, "proto": b.proto.as_str(),
            "port": b.port, "seconds": b.duration_secs,
        })
    }

    /// Apply `b` (in dry-run: render, and check where the driver can); what it did.
    pub async fn apply(&self, b: &BlockRequest, dry_run: bool) -> Result<String, String> {
        match self {
            Driver::Nftables(nft) => {
                let (nft, b) = (nft.clone(), b.clone());
                tokio::task::spawn_blocking(move || nft.apply(&b, b.duration_secs, dry_run))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Driver::Command(template) => {
                let argv = Self::argv(template, "block", b);
                if !dry_run {
                    run(&argv).await?;
                }
                Ok(argv.join(" "))
            }
            Driver::Http(url, client) => {
                let body = Self::body("block", b);
                if !dry_run {
                    post(client, url, &body).await?;
                }
                Ok(format!("POST {} {body}", redact::url(url)))
            }
        }
    }

    /// Remove `b`.
    pub async fn remove(&self, b: &BlockRequest) -> Result<(), String> {
        match self {
            Driver::Nftables(nft) => {
                let (nft, b) = (nft.clone(), b.clone());
                tokio::task::spawn_blocking(move || nft.remove(&b))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Driver::Command(template) => run(&Self::argv(template, "unblock", b)).await,
            Driver::Http(url, client) => post(client, url, &Self::body("unblock", b)).await,
        }
    }
}

async fn run(argv: &[String]) -> Result<(), String> {
    let argv = argv.to_vec();
    tokio::task::spawn_blocking(move || {
        let (program, args) = argv.split_first().ok_or("control.command is empty")?;
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// POST `body` to the firewall's `url`; errors name the URL with its secrets hidden
/// (they are journalled and shown).
async fn post(client: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), String> {
    let shown = redact::url(url);
    let response = client
        .post(url)
        .timeout(std::time::Duration::from_secs(10))
        .json(body)
        .send()
        .await
        .map_err(|e| redact::text(&format!("{shown}: {e}")))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{shown}: HTTP {}", response.status()))
    }
}
