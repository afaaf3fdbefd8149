//! `portwatch plan`: whether the configured cadences can be met, the same plan as
//! `GET /api/v1/plan` (see `portwatch_work::plan`). It reads the config and, where
//! there is one, the deployment's state: the embedded store by default, the
//! scale-out ClickHouse and journal with `--clickhouse`. Without state every host
//! counts as live and every zone as having one probe node (or `--nodes`).

use std::io::Write;
use std::sync::Arc;

use portwatch_ingest::EmbeddedLog;
use portwatch_work::{Plan, ZonePlan};

use crate::cli::PlanArgs;
use crate::config::Config;
use crate::output::{json_line, Table};
use crate::read_model::{ClickHouseRead, EmbeddedRead};
use crate::InputError;
use portwatch_work::jobs::JobBoard;

/// `portwatch plan`
pub async fn run(cfg: &Config, args: &PlanArgs) -> anyhow::Result<()> {
    if args.nodes == Some(0) {
        return Err(InputError("--nodes `0`: at least one probe node".into()).into());
    }
    let configured = crate::serve::schedule(cfg);
    let estate = crate::serve::estate(cfg, args.clickhouse);
    let assets = cfg.asset_map();
    let mut assumed = None;
    let plan = if args.clickhouse {
        let store = portwatch_stores::ClickHouseStore::new(cfg.scaleout.clickhouse.clone())?;
        store.check_schema().await?;
        let read = ClickHouseRead {
            store,
            stale_after_secs: cfg.scaleout.probe.heartbeat.as_secs() * 3,
        };
        let ledger = super::token::ledger(cfg, true).await?;
        let cadences = portwatch_api::plan::cadences(&configured, ledger.read().ledger());
        portwatch_work::current(&read, &assets, &estate, cadences, args.nodes).await?
    } else if cfg.state_path().exists() {
        let read = EmbeddedRead {
            store: Arc::new(super::query::open_store(cfg)?),
            log: Arc::new(EmbeddedLog::open(cfg.events_path())?),
            board: Arc::new(JobBoard::default()),
            node: cfg.node.clone(),
            zone: crate::config::DEFAULT_ZONE.to_string(),
        };
        let ledger = super::token::ledger(cfg, false).await?;
        let cadences = portwatch_api::plan::cadences(&configured, ledger.read().ledger());
        portwatch_work::current(&read, &assets, &estate, cadences, args.nodes).await?
    } else {
        assumed = Some(format!(
            "no state at {} yet: every host counts as live, with {} probe node(s)",
            cfg.state_path().display(),
            args.nodes.unwrap_or(1)
        ));
        let cadences = portwatch_api::plan::cadences(&configured, &Default::default());
        let zones: Vec<portwatch_work::ZoneFacts> = estate
            .zones
            .iter()
            .map(|(name, addresses)| portwatch_work::ZoneFacts {
                name: name.clone(),
                assets: *addresses,
                live_ratio: None,
                nodes: args.nodes.unwrap_or(1),
                open_ports: 0,
                web_ports: 0,
                measured: Default::default(),
            })
            .collect();
        portwatch_work::plan(&zones, &estate.settings(cadences))
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &plan)?;
    } else {
        if let Some(note) = assumed {
            writeln!(out, "({note})")?;
        }
        write_plan(&mut out, &plan)?;
    }
    Ok(())
}

/// Seconds for people.
fn secs(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else {
        humantime::format_duration(std::time::Duration::from_secs(s.round() as u64)).to_string()
    }
}

/// A share of the probe time: `12.5%`, or `7159×` when far over.
fn share(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.0}×")
    } else {
        format!("{:.1}%", s * 100.0)
    }
}

fn write_zone(out: &mut impl Write, z: &ZonePlan) -> std::io::Result<()> {
    writeln!(
        out,
        "zone {}: {} addresses, {} counted live, {} probe node(s), {:.0} probes/s; the tasks need {} of its probe time",
        z.zone,
        z.assets,
        z.live_hosts,
        z.nodes,
        z.probes_per_sec,
        share(z.budget_share)
    )?;
    let mut table = Table::new(&[
        "TASK", "CADENCE", "TARGETS", "PORTS", "PASS", "MEASURED", "SHARE", "MEETS",
    ]);
    for t in &z.tasks {
        table.row(vec![
            t.task.clone(),
            secs(t.cadence_secs as f64),
            t.targets.to_string(),
            t.ports_per_target.to_string(),
            secs(t.expected_pass_secs),
            t.measured_pass_secs.map_or_else(|| "-".into(), secs),
            share(t.budget_share),
            if t.meets_cadence { "yes" } else { "NO" }.into(),
        ]);
    }
    table.write(out)?;
    writeln!(out, "worst-case detection:")?;
    for d in &z.detection {
        let what = format!("{} on a {} host", d.risk.replace('_', " "), d.hosts);
        match (d.worst_secs, &d.via) {
            (Some(w), Some(via)) => writeln!(out, "  {what:<32} {} (via {via})", secs(w))?,
            _ => writeln!(out, "  {what:<32} never: no running task covers it")?,
        }
    }
    Ok(())
}

fn write_plan(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    for z in &plan.zones {
        write_zone(out, z)?;
        writeln!(out)?;
    }
    if plan.warnings.is_empty() {
        writeln!(out, "every cadence can be met")?;
    } else {
        writeln!(out, "warnings:")?;
        for w in &plan.warnings {
            writeln!(out, "  {w}")?;
        }
    }
    Ok(())
}
