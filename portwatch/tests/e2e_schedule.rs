//! An admin changes a task's cadence through the API: the running scheduler follows
//! within seconds, the change is on record (who, when, over which configured
//! cadence), survives a restart, and `off` stops the task. Real `portwatch up`, a
//! loopback fleet in the test's namespace.

#![allow(clippy::print_stderr)]

mod support;

use std::time::Duration;

use support::{tempdir, wait_for, write_config, Netns, Proc};

const API: &str = "127.0.0.1:18097";

#[test]
fn a_cadence_set_by_an_admin_is_followed_recorded_and_kept() {
    let ns = Netns::new("sched");
    let dir = tempdir();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[scope]
allow_reserved = true

[[assets]]
cidr = "127.0.0.0/29"

[scan]
rate = 100000
timeout = "300ms"

[schedule]
liveness = "off"
full_ports = "off"
high_risk_ports = "off"
port_recheck = "off"
offline_high_risk_ports = "off"
all_assets_full_ports = "off"
service_detection = "off"
admin_panels = "off"

[store]
path = "{}"

[api]
listen = "{API}"
"#,
            data.display()
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    let _redis = ns.serve("127.0.0.2:6379");
    let admin = ns.token(cfg, "ada", "admin");
    let operator = ns.token(cfg, "olga", "operator");
    let start = |log: &str| Proc(ns.spawn_portwatch(&["--config", cfg, "up"], &dir.path().join(log)));
    let mut up = start("up.log");
    let jobs = || -> Option<usize> {
        let bearer = format!("Bearer {admin}");
        let answer = ns.http(
            "GET",
            API,
            "/api/v1/jobs",
            &[("Authorization", bearer.as_str())],
            "",
        )?;
        let rows: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        (answer.status == 200).then(|| rows.as_array().map_or(0, Vec::len))
    };
    wait_for(Duration::from_secs(20), jobs).expect("up serves");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(jobs(), Some(0), "every task is off: nothing runs");

    // An operator may not; an admin may.
    let body = r#"{"every":"1s"}"#;
    let (status, _) = ns.api(API, "PUT", "/api/v1/schedule/high_risk_ports", &operator, body);
    assert_eq!(status, 403);
    let (status, schedule) = ns.api(API, "PUT", "/api/v1/schedule/high_risk_ports", &admin, body);
    assert_eq!(status, 200, "{schedule}");
    let task = schedule
        .as_array()
        .and_then(|t| t.iter().find(|t| t["task"] == "high_risk_ports").cloned())
        .expect("the task");
    assert_eq!(
        (task["cadence"].as_str(), task["configured"].as_str()),
        (Some("1s"), None)
    );
    assert_eq!(task["set_by"], "ada");
    let seen = wait_for(Duration::from_secs(15), || {
        let (status, rows) = ns.api(API, "GET", "/api/v1/ports", &admin, "");
        (status == 200
            && rows
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["port"] == 6379)))
        .then_some(())
    });
    assert!(seen.is_some(), "the task never ran at its new cadence");
    let ran = jobs().expect("jobs");
    assert!(ran >= 1);

    // It survives a restart: the journal holds it, the config still says off.
    assert_eq!(up.stop(), Some(0));
    let restarted = chrono::Utc::now();
    let mut up = start("up2.log");
    wait_for(Duration::from_secs(20), jobs).expect("up serves again");
    let newer = wait_for(Duration::from_secs(15), || {
        let (_, rows) = ns.api(API, "GET", "/api/v1/jobs", &admin, "");
        rows.as_array()?
            .iter()
            .filter_map(|j| {
                j["started_at"]
                    .as_str()?
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .ok()
            })
            .any(|at| at > restarted)
            .then_some(())
    });
    assert!(newer.is_some(), "no job after the restart");

    // Off stops it.
    let (status, _) = ns.api(
        API,
        "PUT",
        "/api/v1/schedule/high_risk_ports",
        &admin,
        r#"{"every":"off"}"#,
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_secs(3));
    let settled = jobs().expect("jobs");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(jobs(), Some(settled), "jobs still start after off");
    assert_eq!(up.stop(), Some(0));
}
