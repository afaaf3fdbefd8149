//! `portwatch ping`: ad-hoc liveness check of some targets.

use std::io::Write;

use portwatch_events::{HostLiveness, PortSet, ProbeOutcome};
use tokio::sync::mpsc;

use crate::cli::PingArgs;
use crate::config::Config;
use crate::output::{json_line, Table};
use crate::InputError;

/// Ping the targets and print one verdict per host.
pub async fn run(cfg: Config, args: PingArgs) -> anyhow::Result<()> {
    let targets = cfg.scope.check(&args.targets, args.allow_large)?;
    let ports = match &args.ports {
        Some(text) => PortSet::parse(text).map_err(|e| InputError(format!("-p: {e}")))?,
        None => cfg.scan.liveness_ports.clone(),
    };
    let mut scan = cfg.scan.clone();
    if let Some(mode) = &args.mode {
        scan.mode = mode.parse().map_err(|e| InputError(format!("--mode: {e}")))?;
    }
    let pinger = scan
        .pinger()
        .map_err(|e| InputError(format!("scan mode syn: {e}")))?;
    let (tx, mut rx) = mpsc::channel::<HostLiveness>(256);
    let scope = cfg.scope.clone();
    let list: Vec<_> = targets.iter().collect();
    let task = tokio::spawn(async move { pinger.ping(list, (&ports, &scope), tx).await });
    let mut verdicts = Vec::new();
    while let Some(v) = rx.recv().await {
        verdicts.push(v);
    }
    task.await??;
    verdicts.sort_by_key(|v| v.ip);
    let mut out = std::io::stdout().lock();
    if args.json {
        for v in &verdicts {
            json_line(&mut out, v)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&["IP", "ALIVE", "ANSWERED BY"]);
    for v in &verdicts {
        let answered: Vec<String> = v
            .probes
            .iter()
            .filter(|p| matches!(p.outcome, ProbeOutcome::Open | ProbeOutcome::Closed))
            .map(|p| {
                let method = serde_json::to_value(p.method)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                match p.port {
                    Some(port) => format!("{method} {port}"),
                    None => method,
                }
            })
            .collect();
        table.row(vec![
            v.ip.to_string(),
            if v.alive { "yes".into() } else { "no".into() },
            if answered.is_empty() {
                "-".into()
            } else {
                answered.join(", ")
            },
        ]);
    }
    table.write(&mut out)?;
    out.flush()?;
    Ok(())
}
