//! The console in headless Chromium (Debian's), driven by playwright-core
//! (`tests/browser/console.mjs`), against `portwatch up` watching a loopback fleet in
//! the test's namespace, and against `portwatch control` on tansu + ClickHouse with
//! probe nodes in two zones: sign in as an operator, see a newly opened port appear
//! on the open-ports page without a reload, file it for approval, sign in as an
//! approver and approve it, see it leave the alerting list, and find the
//! dashboard's numbers equal to the API's. Screenshots of every page are kept in
//! `target/test-artifacts/console-embedded/` and `console-scaleout/`.

#![allow(clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::scaleout::{stack_config, Stack};
use support::{loopback_up_config, stderr, stdout, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18096";

fn tools() -> PathBuf {
    std::env::var_os("PORTWATCH_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools"))
}

/// Run the browser script against the console at `url`; its JSON step lines.
fn drive(ns: &Netns, url: &str, tokens: [&str; 3], new_port: &str, shots: &Path) -> Vec<serde_json::Value> {
    let tools = tools();
    assert!(
        tools.join("node_modules/playwright-core/package.json").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "chromium or playwright-core missing: the test command runs `scripts/console-tools.sh install`"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs");
    let _ = std::fs::remove_dir_all(shots);
    let out = ns
        .command("timeout")
        .args(["300", "node"])
        .arg(&script)
        .env("PW_URL", url)
        .env("PW_OPERATOR", tokens[0])
        .env("PW_APPROVER", tokens[1])
        .env("PW_ADMIN", tokens[2])
        .env("PW_NEW_PORT", new_port)
        .env("PW_SHOTS", shots)
        .env("PW_TOOLS", &tools)
        .env("HOME", shots.parent().unwrap_or(shots))
        .output()
        .expect("run node");
    let text = stdout(&out);
    eprintln!("{text}");
    let steps: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status.success() && steps.last().is_some_and(|s| s["step"] == "done"),
        "the browser run failed:\n{text}\n{}",
        stderr(&out)
    );
    steps
}

#[test]
fn an_operator_files_a_new_port_and_an_approver_approves_it_in_the_browser() {
    let ns = Netns::new("console");
    let dir = tempdir();
    let cfg = loopback_up_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.0/29\"\nowner = \"web-team\"\nsystem = \"shop\"",
        "high_risk_ports = \"1s\"",
        API,
        "",
    );
    let cfg = cfg.to_str().expect("utf8");
    let _redis = ns.serve("127.0.0.2:6379");
    let operator = ns.token(cfg, "olga", "operator");
    let approver = ns.token(cfg, "arno", "approver");
    let admin = ns.token(cfg, "ada", "admin");
    let log = dir.path().join("up.log");
    let mut up = Proc(ns.spawn_portwatch(&["--config", cfg, "up"], &log));
    wait_for(Duration::from_secs(30), || {
        let ports = ns.get_json_as(API, "/api/v1/ports", &admin)?;
        ports.to_string().contains("6379").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "up never showed the fleet; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/console-embedded");
    let steps = drive(
        &ns,
        &format!("http://{API}"),
        [&operator, &approver, &admin],
        "127.0.0.4:5432",
        &shots,
    );
    on_record(&ns, API, &admin, &steps, "127.0.0.4:5432");
    assert_eq!(up.stop(), Some(0));
}

/// What the browser did is on record in the API, by the right people.
fn on_record(ns: &Netns, api: &str, admin: &str, steps: &[serde_json::Value], new_port: &str) {
    let (ip, port) = new_port.split_once(':').expect("ip:port");
    let net = format!("{ip}/32");
    let filed = steps
        .iter()
        .find(|s| s["step"] == "filed")
        .and_then(|s| s["approval"].as_str())
        .expect("an approval id")
        .to_string();
    let (status, approvals) = ns.api(api, "GET", "/api/v1/approvals", admin, "");
    assert_eq!(status, 200);
    let approval = approvals
        .as_array()
        .and_then(|a| a.iter().find(|a| a["approval_id"] == filed.as_str()))
        .unwrap_or_else(|| panic!("{filed} not on record: {approvals}"));
    assert_eq!(approval["state"], "approved");
    assert_eq!(approval["requested_by"], "olga");
    assert_eq!(approval["decision"]["by"], "arno");
    assert_eq!(approval["net"], net.as_str());
    // The history page showed the port's observations; the API has its scans, each
    // saying whether it saw the port open, the newest first, and one that did.
    let history = steps
        .iter()
        .find(|s| s["step"] == "history shows the observations")
        .expect("the history step");
    assert!(history["open"].as_u64() > Some(0), "{history}");
    let (status, scans) = ns.api(
        api,
        "GET",
        &format!("/api/v1/events?ip={ip}&port={port}&kind=host_scan&limit=1000"),
        admin,
        "",
    );
    assert_eq!(status, 200, "{scans}");
    let scans = scans.as_array().expect("a list");
    assert!(
        scans.iter().any(|e| e["port_open"] == true),
        "no scan saw {new_port} open"
    );
    assert!(scans
        .iter()
        .all(|e| e["event"]["ip"] == ip && e["port_open"].is_boolean()));
    // Newest first: by time in ClickHouse, by arrival in the embedded log (a scan is
    // recorded as it completes, so within the batching of the appender).
    let times: Vec<chrono::DateTime<chrono::Utc>> = scans
        .iter()
        .filter_map(|e| e["ts"].as_str()?.parse().ok())
        .collect();
    assert_eq!(times.len(), scans.len());
    assert!(
        times
            .windows(2)
            .all(|w| w[0] + chrono::Duration::seconds(2) >= w[1]),
        "newest first: {times:?}"
    );
    for page in [
        "login",
        "dashboard",
        "ports-new",
        "file-for-approval",
        "approvals",
        "ports-alerting",
        "panels",
        "hosts",
        "tasks",
        "alerts",
        "blocks",
        "history",
        "users",
    ] {
        let shot = steps
            .iter()
            .any(|s| s["step"] == "screenshot" && s["name"] == page);
        assert!(shot, "no screenshot of {page}");
    }
}

#[test]
fn the_same_console_drives_the_control_plane_on_kafka_and_clickhouse() {
    // Reads need a session here too.
    let config = stack_config("high_risk_ports = \"1s\"", "")
        .replace("anonymous_read = true", "anonymous_read = false");
    let stack = Stack::start("console-so", &config);
    let _redis = stack.ns.serve("127.0.1.2:6379");
    let mut control = stack.spawn(&["control"], "control.log");
    let _a = stack.spawn_probe("a");
    let _b = stack.spawn_probe("b");
    let _projector = stack.spawn(&["project"], "project.log");
    let api = support::scaleout::API;
    // The control plane creates the topics (the decisions topic the tokens go to).
    wait_for(Duration::from_secs(60), || {
        stack.ns.http_get(api, "/healthz").map(|_| ())
    })
    .unwrap_or_else(|| panic!("control plane not up; log:\n{}", stack.log("control.log")));
    let operator = stack.token("olga", "operator");
    let approver = stack.token("arno", "approver");
    let admin = stack.token("ada", "admin");
    wait_for(Duration::from_secs(60), || {
        let ports = stack.ns.get_json_as(api, "/api/v1/ports", &admin)?;
        ports.to_string().contains("6379").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "control never showed the fleet; log:\n{}",
            stack.log("control.log")
        )
    });
    // Every token has reached the control plane (it follows the journal every second).
    for token in [&operator, &approver] {
        wait_for(Duration::from_secs(20), || {
            stack.ns.get_json_as(api, "/api/v1/whoami", token)
        })
        .expect("token known to the control plane");
    }
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/console-scaleout");
    let steps = drive(
        &stack.ns,
        &format!("http://{api}"),
        [&operator, &approver, &admin],
        "127.0.1.4:5432",
        &shots,
    );
    on_record(&stack.ns, api, &admin, &steps, "127.0.1.4:5432");
    assert_eq!(control.stop(), Some(0));
}
