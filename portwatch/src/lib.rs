//! The portwatch binary's library: roles and commands behind the CLI.
//!
//! `main.rs` only parses the command line, sets up tracing and calls [`run`]. The
//! roles that run until stopped are in [`roles`] (`up`, `probe`, `project`,
//! `control`, `migrate`: wiring only); one-shot commands in [`commands`] (`scan`,
//! `ping`, the plan, the store queries); the API's adapters to each deployment's
//! store in [`read_model`] and [`serve`]. Scheduling, chunks and leases, running
//! jobs, the probe nodes and the block controller are the work crate's
//! (`portwatch_work`).

pub mod cli;
pub mod commands;
pub mod config;
pub mod notifier;
pub mod output;
pub mod projector;
pub mod read_model;
pub mod reporter;
pub mod roles;
pub mod serve;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// A future that resolves when the process should stop (Ctrl-C or SIGTERM).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> Shutdown {
    Box::pin(async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    })
}

/// Set up logging to stderr.
pub fn init_tracing(filter: &str, json: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log filter `{filter}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Errors caused by the user's input (exit code 2) as opposed to runtime failures (1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Exit code for an error: 2 for bad input or config, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let input = err.chain().any(|cause| {
        cause.is::<InputError>()
            || cause.is::<config::ConfigError>()
            || cause.is::<portwatch_probes::TargetError>()
            || cause.is::<portwatch_events::PortSetError>()
    });
    if input {
        2
    } else {
        1
    }
}

/// Load the config named on the command line (or the built-in demo), applying
/// `--data`.
pub fn load_config(cli_config: Option<&PathBuf>, data: Option<&PathBuf>) -> anyhow::Result<Config> {
    let mut cfg = Config::load(cli_config.map(|p| p.as_path()))?;
    if let Some(dir) = data {
        cfg.store_path.clone_from(dir);
    }
    Ok(cfg)
}

/// Run one command to completion.
pub async fn run(cli: Cli, shutdown: Shutdown) -> anyhow::Result<()> {
    let cfg = load_config(cli.config.as_ref(), cli.data.as_ref())?;
    match cli.command {
        Command::Up(args) => roles::up::run(cfg, args, shutdown).await,
        Command::Scan(args) => commands::scan::run(cfg, args, shutdown).await,
        Command::Ping(args) => commands::ping::run(cfg, args).await,
        Command::Ports(args) => commands::query::ports(&cfg, &args),
        Command::Hosts(args) => commands::query::hosts(&cfg, &args),
        Command::Episodes(args) => commands::query::episodes(&cfg, &args),
        Command::Alerts(args) => commands::query::alerts(&cfg, &args),
        Command::Events(args) => commands::query::events(&cfg, &args),
        Command::Snapshot(args) if args.clickhouse => commands::query::snapshot_clickhouse(&cfg).await,
        Command::Snapshot(_) => commands::query::snapshot(&cfg),
        Command::Plan(args) => commands::plan::run(&cfg, &args).await,
        Command::Probe(args) => roles::probe::run(cfg, args, shutdown).await,
        Command::Project(args) => roles::project::run(cfg, args, shutdown).await,
        Command::Control(args) => roles::control::run(cfg, args, shutdown).await,
        Command::Migrate(args) => roles::migrate::run(&cfg, &args).await,
        Command::Rebuild(args) if args.from_clickhouse => {
            projector::rebuild_from_clickhouse(&cfg, &args.to).await
        }
        Command::Rebuild(args) => projector::rebuild(&cfg, &args.to).await,
        Command::Token(cli::TokenCommand::Create(args)) => commands::token::create(&cfg, &args).await,
        Command::Audit(args) => commands::token::audit(&cfg, &args).await,
        Command::Approval(args) => commands::approval::run(&cfg, &args).await,
        Command::Report(args) => commands::report::run(&cfg, &args),
        Command::CheckConfig => commands::query::check_config(&cfg),
    }
}
