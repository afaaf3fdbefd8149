//! `portwatch token create`: a token issued from the shell, journalled where the
//! deployment's servers will see it (they follow the journal), printed once.

use std::io::Write;
use std::sync::{Arc, RwLock};

use portwatch_ingest::{EmbeddedLog, Journal, KafkaJournal};
use portwatch_projections::{Notifier, Role};

use crate::cli::TokenCreateArgs;
use crate::config::Config;
use crate::InputError;

/// Issue the token and print it.
pub async fn create(cfg: &Config, args: &TokenCreateArgs) -> anyhow::Result<()> {
    let role = args
        .role
        .as_deref()
        .map(str::parse::<Role>)
        .transpose()
        .map_err(|e| InputError(format!("--role: {e}")))?;
    portwatch_api::tokens::check_user(&args.user).map_err(|e| InputError(format!("--user: {e}")))?;
    let journal: Arc<dyn Journal> = if args.kafka {
        let so = &cfg.scaleout;
        Arc::new(KafkaJournal::open(&so.kafka, so.kafka_timeout)?)
    } else {
        Arc::new(EmbeddedLog::open(cfg.events_path())?)
    };
    let state = Arc::new(RwLock::new(Notifier::new(cfg.alerts.policy.clone())));
    portwatch_notify::service::catch_up(&journal, &state, 0).await?;
    let current = state
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .ledger()
        .role(&args.user);
    let by = format!("cli:{}", whoami());
    let (decisions, token, id, role) =
        portwatch_api::tokens::issue(current, &args.user, role, &by).map_err(InputError)?;
    portwatch_notify::service::record(&journal, &state, decisions).await?;
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
