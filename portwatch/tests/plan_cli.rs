//! `portwatch plan`: the planner's arithmetic as the CLI prints it, for the estate of
//! the brief (a /16 of assets, 41 high-risk ports, 10,000 probes a second, one
//! probe node), and a cadence that cannot be met flagged with what would fix it.
//! It sends no probe: no namespace is needed.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{bin, stderr, tempdir, write_config};

/// 41 ports: the high-risk list of the acceptance.
const PORTS_41: &str = "21-23,25,53,80,110,111,135,139,143,443,445,993,995,1433,1521,2049,2375,2376,3306,3389,5432,5601,5900-5902,5984,6379,7001,8080,8443,9000,9042,9200,9300,11211,27017,27018,50000,50070";

fn run_plan(cfg: &std::path::Path, data: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args([
            "--config",
            cfg.to_str().expect("utf8"),
            "--data",
            data.to_str().expect("utf8"),
            "plan",
        ])
        .args(extra)
        .output()
        .expect("run portwatch plan")
}

fn config(dir: &std::path::Path, full_ports: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"[scope]
allow_reserved = true
max_targets = 65536

[[assets]]
cidr = "10.20.0.0/16"
zone = "dmz"

[scan]
rate = 10000
high_risk_ports = "{PORTS_41}"

[schedule]
liveness = "off"
high_risk_ports = "5m"
full_ports = "{full_ports}"
"#
        ),
    )
}

fn task<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["zones"][0]["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["task"] == name))
        .unwrap_or_else(|| panic!("no {name} in {plan}"))
}

#[test]
fn a_slash_16_at_ten_thousand_probes_a_second_has_a_269_second_high_risk_pass() {
    let dir = tempdir();
    let cfg = config(dir.path(), "1m");
    let out = run_plan(&cfg, &dir.path().join("data"), &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(text.lines().count(), 1, "one JSON line: {text}");
    let plan: Value = serde_json::from_str(&text).expect("json");
    let zone = &plan["zones"][0];
    // The embedded deployment plans one zone holding every asset, with its one node.
    assert_eq!(zone["zone"], "default");
    assert_eq!(zone["assets"], 65_536);
    assert_eq!(zone["nodes"], 1);
    let high = task(&plan, "high_risk_ports");
    assert_eq!(high["ports_per_target"], 41);
    assert_eq!(high["probes"], 65_536u64 * 41);
    // 2,686,976 probes at 10,000 a second.
    let pass = high["expected_pass_secs"].as_f64().expect("number");
    assert!((pass - 268.6976).abs() < 1e-6, "{high}");
    assert_eq!(high["cadence_secs"], 300);
    assert_eq!(high["meets_cadence"], true);
    assert_eq!(high["measured_pass_secs"], Value::Null, "nothing ran yet");

    let full = task(&plan, "full_ports");
    assert_eq!(full["cadence_secs"], 60);
    assert_eq!(full["meets_cadence"], false);
    let pass = full["expected_pass_secs"].as_f64().expect("number");
    assert!((pass - 65_536.0 * 65_535.0 / 10_000.0).abs() < 1e-3, "{full}");
    let warnings: Vec<&str> = plan["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let flagged = warnings
        .iter()
        .find(|w| w.contains("full_ports cannot keep its cadence of 60 s"))
        .unwrap_or_else(|| panic!("full_ports not flagged: {warnings:?}"));
    assert!(
        flagged
            .contains("it needs 7159 node(s), or 71581696 probes/s per node, or a cadence of at least 5.0 d"),
        "{flagged}"
    );
    // The high-risk port on a live host: one cadence plus one pass at worst.
    let live = &zone["detection"][0];
    assert_eq!(
        (live["risk"].as_str(), live["hosts"].as_str()),
        (Some("high_risk_port"), Some("live"))
    );
    assert!((live["worst_secs"].as_f64().expect("covered") - 568.6976).abs() < 1e-6);

    // For people: the same figures, and the warning.
    let out = run_plan(&cfg, &dir.path().join("data"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        text.contains("high_risk_ports") && text.contains("4m 29s"),
        "{text}"
    );
    assert!(text.contains("full_ports cannot keep its cadence"), "{text}");
}

#[test]
fn more_nodes_shorten_the_pass_and_a_feasible_schedule_has_no_warning() {
    let dir = tempdir();
    let cfg = config(dir.path(), "7d");
    let out = run_plan(&cfg, &dir.path().join("data"), &["--json", "--nodes", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["zones"][0]["nodes"], 3);
    assert_eq!(plan["zones"][0]["probes_per_sec"], 30_000.0);
    let high = task(&plan, "high_risk_ports");
    assert!((high["expected_pass_secs"].as_f64().expect("number") - 268.6976 / 3.0).abs() < 1e-6);
    // 5 days of full sweep over three nodes fits in a week.
    assert_eq!(task(&plan, "full_ports")["meets_cadence"], true);
    assert_eq!(plan["warnings"], serde_json::json!([]), "{plan}");

    let out = run_plan(&cfg, &dir.path().join("data"), &["--nodes", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--nodes `0`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
