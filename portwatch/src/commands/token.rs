//! `portwatch token create`: a token issued from the shell, journalled where the
//! deployment's servers will see it (they follow the journal), printed once; and
//! `portwatch audit`, the journal's decisions with who made them.

use std::io::Write;
use std::sync::Arc;

use portwatch_ingest::{EmbeddedLog, Journal, KafkaJournal};
use portwatch_ledger::{audit, tokens, Handle};
use portwatch_projections::Role;

use crate::cli::{AuditArgs, TokenCreateArgs};
use crate::config::Config;
use crate::output::{json_line, ts, Table};
use crate::InputError;

/// The deployment's ledger (the embedded log, or Kafka's decisions topic), read to
/// its end.
pub(crate) async fn ledger(cfg: &Config, kafka: bool) -> anyhow::Result<Handle> {
    let inner: Arc<dyn Journal> = if kafka {
        let so = &cfg.scaleout;
        Arc::new(KafkaJournal::open(&so.kafka, so.kafka_timeout)?)
    } else {
        Arc::new(EmbeddedLog::open(cfg.events_path())?)
    };
    let ledger = crate::notifier::ledger(cfg, cfg.sealed(inner)?);
    ledger.catch_up().await?;
    Ok(ledger)
}

/// Print the audit: the journal folded, newest first, filtered.
pub async fn audit(cfg: &Config, args: &AuditArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|v| audit::parse_since(v, chrono::Utc::now()))
        .transpose()
        .map_err(|e| InputError(format!("--{e}")))?;
    let ledger = ledger(cfg, args.kafka).await?;
    let query = audit::AuditQuery {
        user: args.user.clone(),
        kind: args.kind.clone(),
        since,
        before: None,
        limit: args.limit.max(1),
    };
    let (entries, _) = audit::page(ledger.read().ledger(), &query);
    let mut out = std::io::stdout().lock();
    if args.output.json {
        for e in &entries {
            json_line(&mut out, e)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        "AT", "KIND", "USER", "TOKEN", "ISSUER", "CLIENT", "SUBJECT", "RULE",
    ]);
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for e in &entries {
        table.row(vec![
            ts(Some(e.at)),
            e.kind.clone(),
            e.user.clone(),
            dash(&e.token),
            dash(&e.issuer),
            dash(&e.client),
            e.subject.clone(),
            dash(&e.rule),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// Issue the token and print it.
pub async fn create(cfg: &Config, args: &TokenCreateArgs) -> anyhow::Result<()> {
    let role = args
        .role
        .as_deref()
        .map(str::parse::<Role>)
        .transpose()
        .map_err(|e| InputError(format!("--role: {e}")))?;
    tokens::check_user(&args.user).map_err(|e| InputError(format!("--user: {e}")))?;
    let ledger = ledger(cfg, args.kafka).await?;
    let current = ledger.read().ledger().role(&args.user);
    let by = format!("cli:{}", whoami());
    let issued = tokens::issue(
        current,
        &args.user,
        role,
        &portwatch_projections::Actor::system(&by),
    )
    .map_err(|e| InputError(e.to_string()))?;
    ledger.record(issued.decisions).await?;
    tracing::info!(user = %args.user, role = issued.role.as_str(), token = %issued.id, by = %by, "token issued");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", issued.token)?;
    Ok(())
}

/// The local account running the command, for the record.
fn whoami() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}
