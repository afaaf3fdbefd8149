//! The portwatch binary's library: roles and commands behind the CLI.
//!
//! `main.rs` only parses the command line, sets up tracing and calls [`run`]. Each
//! subcommand lives in its own module: [`scan`] (ad-hoc scans), [`up`] (the embedded
//! all-in-one role: [`scheduler`] + [`projector`] + [`api`]), and [`query`] (reads of
//! the store from the shell).

pub mod cli;
pub mod config;
pub mod jobs;
pub mod output;
pub mod ping;
pub mod projector;
pub mod query;
pub mod read_model;
pub mod scaleout;
pub mod scan;
pub mod scheduler;
pub mod serve;
pub mod up;

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
        Command::Up(args) => up::run(cfg, args, shutdown).await,
        Command::Scan(args) => scan::run(cfg, args, shutdown).await,
        Command::Ping(args) => ping::run(cfg, args).await,
        Command::Ports(args) => query::ports(&cfg, &args),
        Command::Hosts(args) => query::hosts(&cfg, &args),
        Command::Episodes(args) => query::episodes(&cfg, &args),
        Command::Alerts(args) => query::alerts(&cfg, &args),
        Command::Events(args) => query::events(&cfg, &args),
        Command::Snapshot(args) if args.clickhouse => query::snapshot_clickhouse(&cfg).await,
        Command::Snapshot(_) => query::snapshot(&cfg),
        Command::Probe(args) => scaleout::probe::run(cfg, args, shutdown).await,
        Command::Project(args) => scaleout::project::run(cfg, args, shutdown).await,
        Command::Control(args) => scaleout::control::run(cfg, args, shutdown).await,
        Command::Migrate(args) => scaleout::migrate::run(&cfg, &args).await,
        Command::Rebuild(args) => projector::rebuild(&cfg, &args.to),
        Command::CheckConfig => query::check_config(&cfg),
    }
}
