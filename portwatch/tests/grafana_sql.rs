//! Every Grafana dashboard parses, and every panel's SQL (Grafana's macros and the
//! dashboards' variables expanded to concrete values) returns the columns the panel
//! shows, on rows a real scale-out run wrote: once on the project's ClickHouse 18.16
//! (Debian's server) and once on a current ClickHouse (chdb-core 26.x from PyPI,
//! in-process, loaded with the same rows). The run: probe nodes in two zones scan a
//! loopback fleet, one port closes, a webhook receiver takes the notifications, the
//! projector and the control plane write what the panels read.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::receivers::{self, SECRET};
use support::scaleout::{stack_config, Stack};
use support::{stderr, stdout, wait_for};

const HOOK: &str = "127.0.0.1:19120";
/// The ip:port the history dashboard is shown for.
const IP: &str = "127.0.1.3";
/// Its port.
const PORT: &str = "3306";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The columns each panel shows, by dashboard uid and panel title; and whether the
/// seeded run gives it rows (panels about failures have none).
fn expected() -> BTreeMap<(&'static str, &'static str), (Vec<&'static str>, bool)> {
    let mut m = BTreeMap::new();
    let mut add = |uid, title, cols: &[&'static str], rows| {
        m.insert((uid, title), (cols.to_vec(), rows));
    };
    add("portwatch-overview", "Open ports", &["open_ports"], true);
    add(
        "portwatch-overview",
        "Open high-risk exposures",
        &["high_risk"],
        true,
    );
    add(
        "portwatch-overview",
        "Hosts alive",
        &["hosts_alive", "hosts_dead"],
        true,
    );
    add(
        "portwatch-overview",
        "Probe nodes",
        &[
            "node",
            "zone",
            "last_heartbeat",
            "age_secs",
            "running_job",
            "spooled",
            "spool_overflow",
        ],
        true,
    );
    add(
        "portwatch-overview",
        "Exposures opened and closed per day",
        &["time", "opened", "closed"],
        true,
    );
    add(
        "portwatch-overview",
        "MTTD and MTTR (seconds, p50 / p90)",
        &[
            "time",
            "mttd_p50_secs",
            "mttd_p90_secs",
            "mttr_p50_secs",
            "mttr_p90_secs",
        ],
        true,
    );
    add(
        "portwatch-overview",
        "Observations per minute by task",
        &["time", "task", "events"],
        true,
    );
    add(
        "portwatch-overview",
        "Passes by state (last 24 h)",
        &["zone", "task", "state", "passes"],
        true,
    );
    add(
        "portwatch-overview",
        "Open ports, newest first",
        &[
            "ip",
            "port",
            "proto",
            "first_seen",
            "last_seen",
            "evidence",
            "service",
            "episode_id",
        ],
        true,
    );
    add(
        "portwatch-overview",
        "Recent alerts",
        &["at", "kind", "severity", "ip", "port", "proto", "episode_id"],
        true,
    );
    add(
        "portwatch-overview",
        "MTTD, time to notify and MTTR by risk class (seconds, exposures opened in the range)",
        &[
            "risk",
            "episodes",
            "open",
            "mttd_mean_secs",
            "notify_mean_secs",
            "mttr_mean_secs",
        ],
        true,
    );
    add(
        "portwatch-history",
        "Its state now",
        &[
            "state",
            "first_seen",
            "last_seen",
            "service",
            "product",
            "svc_version",
            "risk",
            "evidence",
        ],
        true,
    );
    add(
        "portwatch-history",
        "Exposure episodes",
        &[
            "opened_at",
            "closed_at",
            "duration_secs",
            "mttd_bound_secs",
            "observations",
        ],
        true,
    );
    add(
        "portwatch-history",
        "Scans that saw it open, per hour",
        &["time", "scans_open"],
        true,
    );
    add(
        "portwatch-history",
        "Alerts",
        &["at", "kind", "severity", "risk", "episode_id"],
        true,
    );
    add(
        "portwatch-history",
        "Who was told about the host",
        &[
            "decided_at",
            "kind",
            "channel",
            "outcome",
            "attempts",
            "last_status",
        ],
        true,
    );
    add(
        "portwatch-mttr",
        "By risk class",
        &[
            "risk",
            "episodes",
            "open",
            "mttd_mean_secs",
            "notify_mean_secs",
            "mttr_mean_secs",
            "mttr_p50_secs",
        ],
        true,
    );
    add(
        "portwatch-mttr",
        "By owner",
        &[
            "owner_name",
            "episodes",
            "open",
            "mttd_mean_secs",
            "mttr_mean_secs",
            "mttr_p50_secs",
        ],
        true,
    );
    add(
        "portwatch-mttr",
        "By system",
        &[
            "system_name",
            "episodes",
            "open",
            "mttd_mean_secs",
            "mttr_mean_secs",
            "mttr_p50_secs",
        ],
        true,
    );
    add(
        "portwatch-mttr",
        "How exposures were remediated",
        &["remedy", "episodes", "mttr_mean_secs"],
        true,
    );
    add(
        "portwatch-mttr",
        "Convergence: open and not remediated at the end of each day",
        &["time", "open_unremediated"],
        true,
    );
    add(
        "portwatch-coverage",
        "Staleness per /24 (IPv4)",
        &[
            "range24",
            "hosts",
            "alive",
            "oldest_check",
            "staleness_secs",
            "open_ports",
        ],
        true,
    );
    add(
        "portwatch-coverage",
        "Scans per range and task",
        &["range24", "task", "scans", "hosts_scanned", "last_scan"],
        true,
    );
    add(
        "portwatch-coverage",
        "Scans per task",
        &["task", "scans", "hosts_scanned", "open_per_scan", "age_secs"],
        true,
    );
    add(
        "portwatch-probes",
        "Probe nodes",
        &[
            "node",
            "zone",
            "heartbeat_age_secs",
            "health",
            "running_job",
            "spooled",
            "spool_overflow",
        ],
        true,
    );
    add(
        "portwatch-probes",
        "Passes per zone and state",
        &["zone", "state", "passes"],
        true,
    );
    add(
        "portwatch-probes",
        "Observations per node per minute",
        &["time", "node", "events"],
        true,
    );
    add(
        "portwatch-probes",
        "Failed passes and chunk attempts",
        &["updated_at", "zone", "node", "task", "detail"],
        false,
    );
    add(
        "portwatch-alerts",
        "Alerts per hour by kind",
        &["time", "kind", "alerts"],
        true,
    );
    add(
        "portwatch-alerts",
        "Alerts by severity and risk",
        &["severity", "risk", "alerts"],
        true,
    );
    add(
        "portwatch-alerts",
        "Notifications per hour by kind",
        &["time", "kind", "notifications"],
        true,
    );
    add(
        "portwatch-alerts",
        "Deliveries by channel and outcome",
        &["channel", "outcome", "notifications", "attempts"],
        true,
    );
    add(
        "portwatch-alerts",
        "Deliveries not delivered",
        &[
            "last_at",
            "channel",
            "kind",
            "ip",
            "attempts",
            "outcome",
            "last_status",
        ],
        false,
    );
    m
}

/// Grafana's macros and the dashboards' variables, for the range `[from, to]`.
fn expand(sql: &str, from: i64, to: i64) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$__timeFilter(".len()..];
        let end = after.find(')').expect("macro closes");
        let col = &after[..end];
        out.push_str(&format!(
            "{col} >= toDateTime({from}) AND {col} <= toDateTime({to})"
        ));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out.replace("$__fromTime", &format!("toDateTime({from})"))
        .replace("$__toTime", &format!("toDateTime({to})"))
        .replace("$ip", IP)
        .replace("$port", PORT)
}

/// (id, dashboard uid, panel title, expanded SQL) of every panel.
fn panels(from: i64, to: i64) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let uid = dash["uid"].as_str().expect("uid").to_string();
        for panel in dash["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().expect("title").to_string();
            let sql = panel["targets"][0]["rawSql"].as_str().expect("rawSql");
            assert!(
                !sql.contains(" WITH ") && !sql.contains(" OVER ("),
                "{uid}/{title}: outside the portable subset"
            );
            out.push((
                format!("{uid}/{title}"),
                uid.clone(),
                title,
                expand(sql, from, to),
            ));
        }
    }
    out
}

#[test]
fn every_panel_returns_its_columns_on_clickhouse_18_and_26() {
    let venv = std::env::var_os("PORTWATCH_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/tools"))
        .join("venv/bin/python");
    assert!(
        venv.exists(),
        "{} missing: the test command runs scripts/console-tools.sh install",
        venv.display()
    );
    let stack = Stack::start(
        "grafana",
        &stack_config(
            "high_risk_ports = \"1s\"",
            &format!(
                r#"
[alerts]
group_wait = "1s"
baseline = false

[[channels]]
name = "soc"
kind = "webhook"
url = "http://{HOOK}/hook"
secret = "{SECRET}"

[[assets]]
cidr = "127.0.1.0/28"
owner = "db-team"
system = "billing"
zone = "a"
"#
            ),
        ),
    );
    let hook_log = stack.path("hook.jsonl");
    let _receiver = receivers::http(&stack.ns, HOOK, &hook_log, 0);
    let _redis = stack.ns.serve("127.0.1.2:6379");
    let _mysql = stack.ns.serve(&format!("{IP}:{PORT}"));
    let closing = stack.ns.serve("127.0.2.5:5432");
    let mut control = stack.spawn(&["control"], "control.log");
    let _a = stack.spawn_probe("a");
    let _b = stack.spawn_probe("b");
    let _projector = stack.spawn(&["project"], "project.log");
    let count = |sql: &str| {
        stack
            .sql(sql)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(60), || {
        (count("SELECT count() FROM port_state FINAL WHERE state = 'open'") == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("the fleet never showed; control:\n{}", stack.log("control.log")));
    drop(closing);
    wait_for(Duration::from_secs(60), || {
        let closed = count("SELECT count() FROM episodes FINAL WHERE closed_at IS NOT NULL");
        let delivered = count("SELECT count() FROM deliveries FINAL WHERE outcome = 'delivered'");
        let reports = count("SELECT countIf(remedy = 'closed') FROM episode_reports FINAL");
        (closed >= 1 && delivered >= 1 && reports >= 1).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "closing, deliveries or reports never written; control:\n{}",
            stack.log("control.log")
        )
    });
    assert_eq!(control.stop(), Some(0));

    let now = chrono::Utc::now().timestamp();
    let (from, to) = (now - 2 * 86_400, now + 3600);
    let panels = panels(from, to);
    let expected = expected();
    assert_eq!(
        panels.len(),
        expected.len(),
        "a panel without expected columns, or an expectation without a panel: {:?}",
        panels.iter().map(|p| &p.0).collect::<Vec<_>>()
    );

    // --- ClickHouse 18.16: the server the run wrote to ----------------------------
    let mut old = BTreeMap::new();
    for (id, _, _, sql) in &panels {
        let answer = stack
            .sql(&format!("{sql} FORMAT JSON"))
            .unwrap_or_else(|e| panic!("{id} on 18.16: {e}\n{sql}"));
        let doc: Value = serde_json::from_str(&answer).unwrap();
        let columns: Vec<String> = doc["meta"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect();
        old.insert(id.clone(), (columns, doc["data"].as_array().unwrap().len()));
    }

    // --- ClickHouse 26.x: the same rows, in-process ---------------------------------
    let dump = stack.path("dump");
    std::fs::create_dir_all(&dump).unwrap();
    let tables = stack
        .sql("SELECT name FROM system.tables WHERE database = 'portwatch' AND engine NOT LIKE '%View' FORMAT TSV")
        .unwrap();
    for table in tables.lines().filter(|t| *t != "schema_migrations") {
        let rows = stack
            .sql(&format!("SELECT * FROM {table} FORMAT TabSeparated"))
            .unwrap();
        std::fs::write(dump.join(format!("{table}.tsv")), rows).unwrap();
    }
    let queries: Vec<Value> = panels
        .iter()
        .map(|(id, _, _, sql)| json!({"id": id, "sql": sql}))
        .collect();
    let queries_file = stack.path("queries.json");
    std::fs::write(&queries_file, serde_json::to_string(&queries).unwrap()).unwrap();
    let out = std::process::Command::new(&venv)
        .arg(repo().join("portwatch/tests/support/chdb_panels.py"))
        .arg(repo().join("sql"))
        .arg(&dump)
        .arg(&queries_file)
        .output()
        .expect("run chdb");
    assert!(out.status.success(), "chdb: {}", stderr(&out));
    let new: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("chdb output: {e}: {}", stdout(&out)));

    for (id, uid, title, sql) in &panels {
        let (want, rows_expected) = &expected[&(uid.as_str(), title.as_str())];
        let (columns, rows) = &old[id];
        assert_eq!(columns, want, "{id} on 18.16:\n{sql}");
        assert!(!rows_expected || *rows > 0, "{id}: no rows on 18.16:\n{sql}");
        let current = &new[id];
        assert!(
            current["error"].is_null(),
            "{id} on 26.x: {}\n{sql}",
            current["error"]
        );
        let columns_new: Vec<&str> = current["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(columns_new, *want, "{id} on 26.x");
        assert_eq!(
            current["rows"].as_u64(),
            Some(*rows as u64),
            "{id}: 18.16 and 26.x disagree on the rows"
        );
        eprintln!("{id}: {} columns, {rows} rows on both", want.len());
    }
}
