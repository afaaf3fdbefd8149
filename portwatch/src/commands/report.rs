//! `portwatch report`: MTTD, time to notify, MTTR and the convergence trend, from the
//! embedded store and journal (the same figures as `/api/v1/report`).

use chrono::Utc;
use portwatch_projections::report::{aggregate, convergence, episodes, risk_by_port, By};
use portwatch_stores::{EpisodeQuery, PageRequest, PortQuery};

use crate::cli::ReportArgs;
use crate::config::Config;
use crate::output::{json_line, Table};
use crate::InputError;

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| {
        humantime::format_duration(std::time::Duration::from_secs(s.round().max(0.0) as u64)).to_string()
    })
}

/// Print the report.
pub fn run(cfg: &Config, args: &ReportArgs) -> anyhow::Result<()> {
    let by: By = args.by.parse().map_err(|e| InputError(format!("--by {e}")))?;
    if !(1..=366).contains(&args.days) {
        return Err(InputError(format!("--days {}: a number from 1 to 366", args.days)).into());
    }
    let store = super::query::open_store(cfg)?;
    let all = PageRequest::all();
    let list = store.episodes(&EpisodeQuery::default(), &all)?.items;
    let rows = store.ports(&PortQuery::default(), &all)?.items;
    let risk_of = risk_by_port(&rows);
    let ledger = super::query::ledger(cfg)?;
    let reports = episodes(&list, &risk_of, &cfg.asset_map(), &ledger);
    let until = Utc::now();
    let since = until - chrono::Duration::days(args.days);
    let groups = aggregate(&reports, by, since, until);
    let trend = convergence(&reports, since.date_naive(), until.date_naive());
    let mut out = std::io::stdout().lock();
    if args.json {
        for g in &groups {
            json_line(&mut out, g)?;
        }
        for d in &trend {
            json_line(&mut out, d)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        "GROUP",
        "EPISODES",
        "OPEN",
        "MTTD MEAN",
        "MTTD P50",
        "NOTIFY MEAN",
        "MTTR MEAN",
        "MTTR P50",
    ]);
    for g in groups {
        table.row(vec![
            g.key,
            g.episodes.to_string(),
            g.open.to_string(),
            secs(g.mttd_mean_secs),
            secs(g.mttd_p50_secs.map(|s| s as f64)),
            secs(g.notify_mean_secs),
            secs(g.mttr_mean_secs),
            secs(g.mttr_p50_secs.map(|s| s as f64)),
        ]);
    }
    table.write(&mut out)?;
    let mut trend_table = Table::new(&["DAY", "OPEN, NOT REMEDIATED"]);
    for d in trend {
        trend_table.row(vec![d.day.to_string(), d.open_unremediated.to_string()]);
    }
    trend_table.write(&mut out)?;
    Ok(())
}
