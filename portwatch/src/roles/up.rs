//! `portwatch up`: the embedded all-in-one deployment. Scheduler, probes,
//! projector and API in one process, with the event log and the state in SQLite
//! files under the data directory. No servers needed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use portwatch_ingest::{EmbeddedLog, EventLog};
use portwatch_stores::EmbeddedStore;
use tokio::sync::{watch, Notify};

use crate::cli::UpArgs;
use crate::config::{Config, ConfigSource};
use crate::read_model::EmbeddedRead;
use crate::serve;
use crate::{notifier, projector};
use crate::{InputError, Shutdown};
use portwatch_work::jobs::{Appender, BoardPasses, JobBoard, JobContext};
use portwatch_work::schedule::{LocalPool, Scheduler};

/// How long a graceful stop waits for the projector to fold what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the local worker's lease on a chunk lasts unless renewed.
const LOCAL_LEASE: Duration = Duration::from_secs(15);

/// Run until `shutdown`.
pub async fn run(mut cfg: Config, args: UpArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    if let Some(listen) = &args.listen {
        cfg.api_listen = listen.parse().map_err(|_| {
            InputError(format!(
                "--listen `{listen}`: expected IP:PORT, e.g. 127.0.0.1:7678"
            ))
        })?;
    }
    let size = cfg.scope.assets().len();
    if size > cfg.scope.max_targets() && !args.allow_large {
        return Err(InputError(format!(
            "the assets cover {size} addresses, more than scope.max_targets = {}; raise it or pass --allow-large",
            cfg.scope.max_targets()
        ))
        .into());
    }
    if cfg.source == ConfigSource::Demo {
        tracing::warn!(
            scope = %cfg.scope.assets(),
            "no config file given: monitoring the loopback demo scope only (pass --config FILE to monitor your assets)"
        );
    }
    let cfg = Arc::new(cfg);
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus metrics recorder")?;

    let embedded_log = Arc::new(EmbeddedLog::open(cfg.events_path())?);
    let log: Arc<dyn EventLog> = embedded_log.clone();
    // The projector's store is the only writer; it creates and migrates the file, so
    // it must be opened before the read-only view.
    let writer_store = Arc::new(EmbeddedStore::open(cfg.state_path())?);
    let reader_store = Arc::new(EmbeddedStore::open_read_only(cfg.state_path())?);
    let notify = Arc::new(Notify::new());
    let (alert_feed, alert_rx) = tokio::sync::mpsc::unbounded_channel();
    let projector = projector::embedded(log.clone(), writer_store, cfg.projection.clone(), notify.clone())
        .with_outlet(Arc::new(notifier::AlertFeed(alert_feed)));
    tracing::info!(
        lag = projector::lag(&*log, &reader_store)?,
        "projection resuming from its committed offset"
    );

    let (stop_tx, stop_rx) = watch::channel(false);

    cfg.scan.check_source()?;
    let scanner = Arc::new(cfg.scan.scanner().context("scan.mode")?);
    tracing::info!(mode = ?scanner.mode(), rate = cfg.scan.rate.get(), "port scanner ready");
    let pinger = Arc::new(cfg.scan.pinger().context("scan.mode")?);
    // The board writes jobs to the state store through its own connection (the
    // projector's is busy folding), so `/api/v1/jobs` outlives a restart.
    let job_store = Arc::new(EmbeddedStore::open(cfg.state_path())?);
    // Jobs a previous process left running ended with it.
    let interrupted =
        job_store.interrupt_running_jobs("interrupted: portwatch stopped before the job finished")?;
    if interrupted > 0 {
        tracing::warn!(
            jobs = interrupted,
            "jobs cut short by the last stop are recorded as failed"
        );
    }
    let (board, job_writer) = JobBoard::persistent(job_store);
    let board = Arc::new(board);
    let appender = Appender::new(log.clone(), notify.clone());
    let ctx = JobContext {
        node: cfg.node.clone(),
        scanner,
        pinger,
        scope: Arc::new(cfg.scope.clone()),
        appender: appender.clone(),
        board: board.clone(),
        detect: cfg.service.detect.clone(),
        detect_concurrency: cfg.service.concurrency,
        policy: cfg.service.policy.clone(),
    };

    let read = Arc::new(EmbeddedRead {
        store: reader_store.clone(),
        log: embedded_log.clone(),
        board: board.clone(),
        node: cfg.node.clone(),
        zone: crate::config::DEFAULT_ZONE.to_string(),
    });
    let ledger = notifier::ledger(&cfg, cfg.sealed(embedded_log.clone())?);
    let first_token = notifier::bootstrap(&cfg, &ledger, &mut stop_rx.clone()).await?;
    let api = serve::context(&cfg, false, read.clone(), ledger.clone(), metrics)?;
    let figures = api.figures.clone();
    let planner = tokio::spawn(crate::reporter::plan(api.clone(), stop_rx.clone()));
    let limits = portwatch_work::blocks::Limits {
        bounds: api.bounds.clone(),
        assets: api.assets.clone(),
    };
    let server = serve::bind(cfg.api_listen, &cfg, api, stop_rx.clone()).await?;
    if let Some(token) = first_token {
        notifier::show_first_token(&token, cfg.api_listen, &cfg.store_path)?;
    }
    tracing::info!(
        listen = %cfg.api_listen,
        data = %cfg.store_path.display(),
        assets = %cfg.scope.assets(),
        "portwatch is up"
    );

    // The projector drains and stops only once the scheduler, the last appender, has.
    let (drain_tx, drain_rx) = watch::channel(false);
    let projector_task = tokio::spawn(projector.run(drain_rx));
    let controller = tokio::spawn(portwatch_work::blocks::run(
        cfg.control.clone(),
        limits,
        ledger.clone(),
        read.clone(),
        stop_rx.clone(),
    ));
    let reporter = tokio::spawn(crate::reporter::run(
        figures,
        ledger.clone(),
        None,
        stop_rx.clone(),
    ));
    let notifier_task = notifier::spawn(
        &cfg,
        notifier::senders(&cfg)?,
        ledger.clone(),
        read.clone(),
        alert_rx,
        stop_rx.clone(),
    );
    // The process is its own probe node: one worker takes the chunks, renewing
    // its lease while it runs one.
    let work = Arc::new(portwatch_work::Work::new(
        LOCAL_LEASE,
        Box::new(BoardPasses(board.clone())),
    ));
    let scheduler =
        Scheduler::new(Arc::new(cfg.schedule_settings()), read, work.clone(), None).with_ledger(ledger);
    let pool = tokio::spawn(
        LocalPool {
            ctx,
            work,
            zone: crate::config::DEFAULT_ZONE.to_string(),
            detect_now: scheduler.detect_now(),
        }
        .run(stop_rx.clone()),
    );
    let scheduler_task = tokio::spawn(scheduler.run(stop_rx.clone()));

    let server = tokio::spawn(server);

    shutdown.await;
    tracing::info!("stopping: finishing the projection of recorded events");
    let _ = stop_tx.send(true);
    let _ = scheduler_task.await;
    let _ = pool.await;
    let _ = notifier_task.await;
    let _ = controller.await;
    let _ = reporter.await;
    let _ = planner.await;
    // A job cancelled mid-append still completes that append on the blocking pool.
    appender.settled(DRAIN_TIMEOUT).await;
    let _ = drain_tx.send(true);
    notify.notify_one();
    if tokio::time::timeout(DRAIN_TIMEOUT, projector_task).await.is_err() {
        tracing::warn!("projector did not drain in time; it resumes from its committed offset next start");
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "API server error"),
        Err(err) => tracing::error!(error = %err, "API server task failed"),
    }
    // Every holder of the board is gone now but this one: its writer ends once the
    // last job changes are written.
    drop(board);
    if tokio::time::timeout(Duration::from_secs(5), job_writer)
        .await
        .is_err()
    {
        tracing::warn!("the last job changes were not recorded in time");
    }
    tracing::info!("portwatch stopped");
    Ok(())
}
