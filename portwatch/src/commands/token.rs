//! `portwatch token create`: a token issued from the shell, journalled where the
//! deployment's servers will see it (they follow the journal), printed once; and
//! `portwatch audit`, the journal's decisions with who made them.

use std::io::Write;
use std::sync::{Arc, RwLock};

use portwatch_ingest::{EmbeddedLog, Journal, KafkaJournal};
use portwatch_projections::{Notifier, Role};

use crate::cli::{AuditArgs, TokenCreateArgs};
use crate::config::Config;
use crate::output::{json_line, ts, Table};
use crate::InputError;

/// The deployment's journal: the embedded log, or Kafka's decisions topic.
fn journal(cfg: &Config, kafka: bool) -> anyhow::Result<Arc<dyn Journal>> {
    let inner: Arc<dyn Journal> = if kafka {
        let so = &cfg.scaleout;
        Arc::new(KafkaJournal::open(&so.kafka, so.kafka_timeout)?)
    } else {
        Arc::new(EmbeddedLog::open(cfg.events_path())?)
    };
    cfg.sealed(inner)
}

/// Print the audit: the journal folded, newest first, filtered.
pub async fn audit(cfg: &Config, args: &AuditArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|v| portwatch_api::audit::parse_since(v, chrono::Utc::now()))
        .transpose()
        .map_err(|e| InputError(format!("--{e}")))?;
    let journal = journal(cfg, args.kafka)?;
    let state = Arc::new(RwLock::new(Notifier::new(cfg.alerts.policy.clone())));
    portwatch_ledger::catch_up(&journal, &state, 0).await?;
    let query = portwatch_api::audit::AuditQuery {
        user: args.user.clone(),
        kind: args.kind.clone(),
        since,
        before: None,
        limit: args.limit.max(1),
    };
    let (entries, _) =
        portwatch_api::audit::page(state.read().unwrap_or_else(|p| p.into_inner()).ledger(), &query);
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
    portwatch_api::tokens::check_user(&args.user).map_err(|e| InputError(format!("--user: {e}")))?;
    let journal = journal(cfg, args.kafka)?;
    let state = Arc::new(RwLock::new(Notifier::new(cfg.alerts.policy.clone())));
    portwatch_ledger::catch_up(&journal, &state, 0).await?;
    let current = state
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .ledger()
        .role(&args.user);
    let by = format!("cli:{}", whoami());
    let (decisions, token, id, role) = portwatch_api::tokens::issue(
        current,
        &args.user,
        role,
        &portwatch_projections::Actor::system(&by),
    )
    .map_err(InputError)?;
    portwatch_ledger::record(&journal, &state, decisions).await?;
    tracing::info!(user = %args.user, role = role.as_str(), token = %id, by = %by, "token issued");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    Ok(())
}

/// The local account running the command, for the record.
fn whoami() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}
