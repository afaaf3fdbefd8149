//! Shell queries of the store: `ports`, `hosts`, `episodes`, `alerts`, `events`,
//! `snapshot`, `check-config`. Tables for people, JSON Lines with `--json` (each line
//! the same object as the API returns).

use std::io::Write;
use std::net::IpAddr;

use portwatch_api::views::{alert_views, port_views, WithAsset};
use portwatch_events::redact;
use portwatch_ingest::{EmbeddedLog, EventLog};
use portwatch_projections::{Decision, Ledger, PortState};
use portwatch_stores::{AlertQuery, EmbeddedStore, EpisodeQuery, HostQuery, PageRequest, PortQuery};

use crate::cli::{AlertsArgs, EpisodesArgs, EventsArgs, OutputArgs, PortsArgs, StateFilter};
use crate::config::Config;
use crate::output::{json_line, service_words, ts, Table};
use crate::InputError;
use portwatch_work::schedule::{cadence, implemented};

pub(crate) fn open_store(cfg: &Config) -> anyhow::Result<EmbeddedStore> {
    let path = cfg.state_path();
    if !path.exists() {
        return Err(InputError(format!(
            "no state at {} (run `portwatch up` first, or point --data / [store] path at its directory)",
            path.display()
        ))
        .into());
    }
    Ok(EmbeddedStore::open_read_only(path)?)
}

fn parse_ip(value: &Option<String>) -> anyhow::Result<Option<IpAddr>> {
    value
        .as_ref()
        .map(|v| {
            v.parse()
                .map_err(|_| InputError(format!("--ip `{v}`: not an IP address")).into())
        })
        .transpose()
}

/// `portwatch ports`
pub fn ports(cfg: &Config, args: &PortsArgs) -> anyhow::Result<()> {
    // Check the arguments before touching the store, so bad input is named first.
    let ip = parse_ip(&args.ip)?;
    let store = open_store(cfg)?;
    let state = match args.state {
        StateFilter::Open => Some(PortState::Open),
        StateFilter::Closed => Some(PortState::Closed),
        StateFilter::All => None,
    };
    let query = PortQuery {
        state,
        ip,
        ..PortQuery::default()
    };
    let rows = store.ports(&query, &PageRequest::all())?.items;
    let assets = cfg.asset_map();
    let mut out = std::io::stdout().lock();
    if args.output.json {
        for view in port_views(rows, &assets, &ledger(cfg)?) {
            json_line(&mut out, &view)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        "IP",
        "PORT",
        "STATE",
        "SERVICE",
        "RISK",
        "FIRST SEEN",
        "LAST SEEN",
        "OWNER",
    ]);
    for row in rows {
        let owner = assets.matching(row.ip).owner.unwrap_or_else(|| "-".into());
        table.row(vec![
            row.ip.to_string(),
            format!("{}/{}", row.port, row.proto),
            row.state.as_str().to_string(),
            service_text(&row),
            row.risk.to_string(),
            ts(Some(row.first_seen)),
            ts(Some(row.last_seen)),
            owner,
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// `portwatch hosts`
pub fn hosts(cfg: &Config, args: &OutputArgs) -> anyhow::Result<()> {
    let rows = open_store(cfg)?
        .hosts(&HostQuery::default(), &PageRequest::all())?
        .items;
    let mut out = std::io::stdout().lock();
    if args.json {
        let assets = cfg.asset_map();
        for row in rows {
            json_line(&mut out, &WithAsset::join(row, &assets))?;
        }
        return Ok(());
    }
    let mut table = Table::new(&["IP", "ALIVE", "OPEN PORTS", "SCANS", "LAST ALIVE", "LAST CHECKED"]);
    for h in rows {
        table.row(vec![
            h.ip.to_string(),
            match h.alive {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "unknown".into(),
            },
            h.open_ports.to_string(),
            h.scans.to_string(),
            ts(h.last_alive),
            ts(h.last_checked),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// `portwatch episodes`
pub fn episodes(cfg: &Config, args: &EpisodesArgs) -> anyhow::Result<()> {
    let open = match (args.open, args.closed) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let ip = parse_ip(&args.ip)?;
    let query = EpisodeQuery {
        open,
        ip,
        ..EpisodeQuery::default()
    };
    let rows = open_store(cfg)?.episodes(&query, &PageRequest::all())?.items;
    let mut out = std::io::stdout().lock();
    if args.output.json {
        let assets = cfg.asset_map();
        for row in rows {
            json_line(&mut out, &WithAsset::join(row, &assets))?;
        }
        return Ok(());
    }
    let mut table = Table::new(&["IP", "PORT", "OPENED", "CLOSED", "MTTD <=", "OPEN FOR"]);
    for e in rows {
        table.row(vec![
            e.ip.to_string(),
            format!("{}/{}", e.port, e.proto),
            ts(Some(e.opened_at)),
            ts(e.closed_at),
            e.mttd_bound_secs.map_or("-".into(), |s| format!("{s}s")),
            e.duration_secs.map_or("open".into(), |s| format!("{s}s")),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// `portwatch alerts`
pub fn alerts(cfg: &Config, args: &AlertsArgs) -> anyhow::Result<()> {
    let ip = parse_ip(&args.ip)?;
    let risk = args
        .risk
        .as_deref()
        .map(|r| r.parse().map_err(|e: String| InputError(format!("--risk: {e}"))))
        .transpose()?;
    let query = AlertQuery {
        ip,
        risk,
        ..AlertQuery::default()
    };
    let rows = open_store(cfg)?.alerts(&query, &PageRequest::all())?.items;
    let assets = cfg.asset_map();
    let views = alert_views(rows, &assets, &ledger(cfg)?);
    let mut out = std::io::stdout().lock();
    if args.output.json {
        for view in views {
            json_line(&mut out, &view)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        "AT",
        "SEVERITY",
        "KIND",
        "IP",
        "PORT",
        "RISK",
        "OWNER",
        "DELIVERIES",
    ]);
    for v in views {
        let a = &v.alert.row;
        let deliveries: Vec<String> = v
            .notifications
            .iter()
            .flat_map(|n| &n.deliveries)
            .map(|d| format!("{}: {} ({})", d.channel, d.outcome.as_str(), d.attempts))
            .collect();
        table.row(vec![
            ts(Some(a.at)),
            a.severity.as_str().to_string(),
            a.kind.as_str().to_string(),
            a.ip.to_string(),
            format!("{}/{}", a.port, a.proto),
            a.risk.to_string(),
            v.alert.asset.owner.clone().unwrap_or_else(|| "-".into()),
            if deliveries.is_empty() {
                "-".into()
            } else {
                deliveries.join(", ")
            },
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// The embedded journal of decisions, folded (empty when there is no log yet).
pub(crate) fn ledger(cfg: &Config) -> anyhow::Result<Ledger> {
    let mut ledger = Ledger::new();
    let path = cfg.events_path();
    if !path.exists() {
        return Ok(ledger);
    }
    let log = cfg.sealed(std::sync::Arc::new(EmbeddedLog::open(path)?))?;
    let mut from = 0;
    loop {
        let records = log.read_decisions(from, 10_000)?;
        let Some(last) = records.last() else {
            return Ok(ledger);
        };
        from = last.offset + 1;
        for r in records {
            if let Ok(d) = Decision::from_json(&r.body) {
                ledger.apply(&d);
            }
        }
    }
}

/// `portwatch events`
pub fn events(cfg: &Config, args: &EventsArgs) -> anyhow::Result<()> {
    let so = &cfg.scaleout;
    let mut out = std::io::stdout().lock();
    if args.dead_letters {
        let topic = &so.kafka.topics.dead_letter;
        for r in portwatch_ingest::kafka::read_topic(&so.kafka, topic, args.limit, so.kafka_timeout)? {
            crate::output::json_line(
                &mut out,
                &serde_json::json!({
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": r.key,
                    "error": r.headers.get("portwatch-error"),
                    "source": r.headers.get("portwatch-source"),
                    "payload": r.payload,
                }),
            )?;
        }
        return Ok(());
    }
    let log: Box<dyn EventLog> = if args.kafka {
        Box::new(portwatch_ingest::KafkaLog::open(
            so.kafka.clone(),
            so.kafka_timeout,
        )?)
    } else {
        let path = cfg.events_path();
        if !path.exists() {
            return Err(InputError(format!("no event log at {}", path.display())).into());
        }
        Box::new(EmbeddedLog::open(&path)?)
    };
    for partition in 0..log.partitions() {
        let mut from = args.from;
        let mut left = args.limit;
        while left > 0 {
            let records = log.read(partition, from, left.min(1000))?;
            let Some(last) = records.last().map(|r| r.offset) else {
                break;
            };
            for record in records {
                match record.event {
                    Ok(event) => writeln!(out, "{}", event.to_json())?,
                    Err(err) => {
                        tracing::warn!(partition, offset = record.offset, error = %err, "undecodable event skipped")
                    }
                }
                left -= 1;
            }
            from = last + 1;
        }
    }
    Ok(())
}

/// `portwatch snapshot`
pub fn snapshot(cfg: &Config) -> anyhow::Result<()> {
    let snapshot = open_store(cfg)?.snapshot()?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &snapshot)?;
    writeln!(out)?;
    Ok(())
}

/// `portwatch snapshot --clickhouse`
pub async fn snapshot_clickhouse(cfg: &Config) -> anyhow::Result<()> {
    let store = portwatch_stores::ClickHouseStore::new(cfg.scaleout.clickhouse.clone())?;
    store.check_schema().await?;
    let snapshot = store.snapshot().await?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &snapshot)?;
    writeln!(out)?;
    Ok(())
}

/// `portwatch check-config`
pub fn check_config(cfg: &Config) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "config OK ({:?})", cfg.source)?;
    writeln!(out, "node: {}", cfg.node)?;
    writeln!(out, "assets ({} addresses):", cfg.scope.assets().len())?;
    for a in &cfg.assets {
        writeln!(
            out,
            "  {}  owner={} system={} zone={}",
            a.net,
            a.owner.as_deref().unwrap_or("-"),
            a.system.as_deref().unwrap_or("-"),
            a.zone
        )?;
    }
    writeln!(
        out,
        "scan: rate={}/s timeout={} concurrency={}",
        cfg.scan.rate,
        cadence(cfg.scan.timeout),
        cfg.scan.concurrency
    )?;
    writeln!(out, "schedule:")?;
    for (task, every) in &cfg.schedule {
        let note = if implemented(*task) {
            ""
        } else {
            "  (not implemented yet: skipped)"
        };
        writeln!(out, "  {task:<24} every {}{note}", cadence(*every))?;
    }
    let d = &cfg.service.detect;
    writeln!(
        out,
        "service: timeout={} parallel={} concurrency={} panel rules={}{} high-risk services={}{}",
        cadence(d.limits.read),
        d.parallel,
        cfg.service.concurrency,
        d.rules.panels.len(),
        if d.panels { "" } else { " (off)" },
        cfg.service.policy.high_risk_services.len(),
        d.nmap
            .as_ref()
            .map(|n| format!(" nmap-service-probes={} match lines", n.lines()))
            .unwrap_or_default()
    )?;
    writeln!(out, "data: {}", cfg.store_path.display())?;
    writeln!(
        out,
        "api: {} (reads {})",
        cfg.api_listen,
        if cfg.anonymous_read {
            "need no token"
        } else {
            "need a viewer token"
        }
    )?;
    let p = &cfg.alerts.policy;
    let secs = |d: chrono::Duration| cadence(d.to_std().unwrap_or_default());
    writeln!(
        out,
        "alerts: group_wait={} group_interval={} repeat_interval={} escalate_after={} baseline={}",
        secs(p.group_wait),
        secs(p.group_interval),
        secs(p.repeat_interval),
        p.escalate_after.map_or("off".to_string(), secs),
        p.baseline
    )?;
    if cfg.alerts.channels.is_empty() {
        writeln!(out, "channels: none (alerts are recorded, nobody is notified)")?;
    }
    for c in &cfg.alerts.channels {
        // Where it goes, never its secret (a robot's URL is its credential).
        let target = c.sender.target();
        writeln!(
            out,
            "channel {}: {} {target} (severity >= {}{})",
            c.name,
            c.sender.kind(),
            c.route.min_severity.as_str(),
            if c.route.escalation {
                ", escalations only"
            } else {
                ""
            }
        )?;
    }
    let so = &cfg.scaleout;
    writeln!(out, "scale-out roles (probe, project, control, migrate):")?;
    writeln!(
        out,
        "  kafka: {} topics {}{{jobs,observations,control,alerts,dead-letter,decisions}} partitions={} replication={}",
        so.kafka.brokers,
        so.kafka.topics.jobs.trim_end_matches("jobs"),
        so.kafka.partitions,
        so.kafka.replication
    )?;
    writeln!(
        out,
        "  clickhouse: {} database={} validation={} retention={} months",
        redact::url(&so.clickhouse.url),
        so.clickhouse.database,
        so.clickhouse.validation,
        so.retention_months
    )?;
    writeln!(
        out,
        "  probe: zone={} spool={} MiB heartbeat={}",
        so.probe.zone,
        so.probe.spool_max_bytes >> 20,
        cadence(so.probe.heartbeat)
    )?;
    writeln!(
        out,
        "  projector: group={} batch={} checkpoint every {}",
        so.projector.group,
        so.projector.batch,
        cadence(so.projector.checkpoint_interval)
    )?;
    Ok(())
}

/// `service product version` of a port row, or `-` before detection.
fn service_text(row: &portwatch_projections::PortRow) -> String {
    let words = service_words(
        row.service.as_deref(),
        row.product.as_deref(),
        row.version.as_deref(),
    );
    if words.is_empty() {
        "-".to_string()
    } else {
        words
    }
}
