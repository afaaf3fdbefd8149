//! An admin changes a task's cadence through the API: the running scheduler follows
//! within seconds, the change is on record (who, when, over which configured
//! cadence), survives a restart, and `off` stops the task. The same flow against
//! real `portwatch up` and against `portwatch control` on tansu + ClickHouse (the
//! change travels as a record of the Kafka decisions topic, a probe node runs the
//! jobs), each with a loopback fleet in the test's namespace.

#![allow(clippy::print_stderr)]

mod support;

use std::time::Duration;

use support::scaleout::{stack_config, Stack};
use support::{loopback_up_config, tempdir, wait_for, write_config, Netns, Proc, EVERY_TASK_OFF};

const API: &str = "127.0.0.1:18097";

/// The jobs `api` lists (newest first, up to 10,000), once it answers.
fn listed_jobs(ns: &Netns, api: &str, admin: &str) -> Option<Vec<serde_json::Value>> {
    ns.get_json_as(api, "/api/v1/jobs?limit=10000", admin)?
        .as_array()
        .cloned()
}

/// The flow, on a deployment serving `api` whose every task is off, with a Redis
/// on 127.0.x.2:6379 inside its assets; `restart` stops and starts the process that
/// runs the scheduler (and waits until it serves again).
fn set_follow_keep_stop(ns: &Netns, api: &str, admin: &str, operator: &str, mut restart: impl FnMut()) {
    let jobs = || listed_jobs(ns, api, admin);
    wait_for(Duration::from_secs(30), jobs).expect("the API serves jobs");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        jobs().map(|j| j.len()),
        Some(0),
        "every task is off: nothing runs"
    );

    // An operator may not; an admin may.
    let body = r#"{"every":"1s"}"#;
    let (status, _) = ns.api(api, "PUT", "/api/v1/schedule/high_risk_ports", operator, body);
    assert_eq!(status, 403);
    let (status, schedule) = ns.api(api, "PUT", "/api/v1/schedule/high_risk_ports", admin, body);
    assert_eq!(status, 200, "{schedule}");
    let task = |schedule: &serde_json::Value| {
        schedule
            .as_array()
            .and_then(|t| t.iter().find(|t| t["task"] == "high_risk_ports").cloned())
            .expect("the task")
    };
    let set = task(&schedule);
    assert_eq!(
        (set["cadence"].as_str(), set["configured"].as_str()),
        (Some("1s"), None),
        "the config has it off: {set}"
    );
    assert_eq!(set["set_by"], "ada");
    let changed = std::time::Instant::now();
    let seen = wait_for(Duration::from_secs(30), || {
        let (status, rows) = ns.api(api, "GET", "/api/v1/ports", admin, "");
        (status == 200
            && rows
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["port"] == 6379)))
        .then_some(())
    });
    assert!(seen.is_some(), "the task never ran at its new cadence");
    eprintln!("the fleet's port found {:?} after the change", changed.elapsed());
    let ran = jobs().expect("jobs");
    assert!(ran.iter().all(|j| j["task"] == "high_risk_ports"), "{ran:?}");

    // It survives a restart: the journal holds it, the config still says off.
    let restarted = chrono::Utc::now();
    restart();
    let (_, schedule) = ns.api(api, "GET", "/api/v1/schedule", admin, "");
    let kept = task(&schedule);
    assert_eq!(
        (kept["cadence"].as_str(), &kept["set_by"]),
        (Some("1s"), &set["set_by"])
    );
    assert_eq!(kept["set_at"], set["set_at"]);
    let newer = wait_for(Duration::from_secs(20), || {
        jobs()?
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
        api,
        "PUT",
        "/api/v1/schedule/high_risk_ports",
        admin,
        r#"{"every":"off"}"#,
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_secs(3));
    let settled = jobs().expect("jobs").len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        jobs().map(|j| j.len()),
        Some(settled),
        "jobs still start after off"
    );
}

/// The task health of high_risk_ports agrees with the job list: per zone, its runs
/// and failures are the jobs listed, its last run is the newest listed. Its zones.
fn task_health_agrees_with_the_jobs(ns: &Netns, api: &str, admin: &str) -> Vec<serde_json::Value> {
    let jobs = listed_jobs(ns, api, admin).expect("jobs");
    // Every job keeps what it was issued with, whichever process recorded its end
    // (a control plane restarted in between once wrote rows with no task).
    for j in &jobs {
        assert!(
            j["task"] == "high_risk_ports" && j["started_at"].is_string() && j["targets"].as_u64() > Some(0),
            "{j}"
        );
    }
    let (status, tasks) = ns.api(api, "GET", "/api/v1/tasks?hours=1", admin, "");
    assert_eq!(status, 200, "{tasks}");
    let tasks = tasks.as_array().expect("tasks");
    assert_eq!(tasks.len(), 9, "every scheduled task: {tasks:?}");
    for t in tasks.iter().filter(|t| t["task"] != "high_risk_ports") {
        assert_eq!(t["zones"], serde_json::json!([]), "never ran: {t}");
    }
    let task = tasks
        .iter()
        .find(|t| t["task"] == "high_risk_ports")
        .expect("the task");
    assert_eq!(task["cadence"], serde_json::Value::Null, "off again: {task}");
    let zones = task["zones"].as_array().expect("zones").clone();
    assert!(!zones.is_empty(), "{task}");
    // A pass is cut into chunks, each attempt of one listed with its pass: the
    // task's runs are its passes.
    let passes: Vec<&serde_json::Value> = jobs.iter().filter(|j| j["pass"].is_null()).collect();
    for attempt in jobs.iter().filter(|j| !j["pass"].is_null()) {
        assert!(
            attempt["chunk"].as_u64() < attempt["chunks"].as_u64() && attempt["try_no"].as_u64() >= Some(1),
            "{attempt}"
        );
        if let Some(pass) = passes.iter().find(|p| p["id"] == attempt["pass"]) {
            assert_eq!(
                (&pass["zone"], &pass["chunks"]),
                (&attempt["zone"], &attempt["chunks"]),
                "{attempt}"
            );
        }
    }
    for z in &zones {
        let listed: Vec<&serde_json::Value> = passes
            .iter()
            .copied()
            .filter(|j| j["zone"] == z["zone"])
            .collect();
        let failed = listed.iter().filter(|j| j["state"] == "failed").count();
        assert_eq!(z["runs"].as_u64(), Some(listed.len() as u64), "{z}");
        assert_eq!(z["failed"].as_u64(), Some(failed as u64), "{z}");
        assert_eq!(z["last"]["id"], listed[0]["id"], "the newest job: {z}");
        assert!(z["duration_secs"].as_f64().is_some_and(|d| d >= 0.0), "{z}");
    }
    eprintln!("task health: {}", serde_json::Value::Array(zones.clone()));
    zones
}

#[test]
fn a_cadence_set_by_an_admin_is_followed_recorded_and_kept() {
    let ns = Netns::new("sched");
    let dir = tempdir();
    let cfg = loopback_up_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.0/29\"",
        EVERY_TASK_OFF,
        API,
        "",
    );
    let cfg = cfg.to_str().expect("utf8");
    let _redis = ns.serve("127.0.0.2:6379");
    let admin = ns.token(cfg, "ada", "admin");
    let operator = ns.token(cfg, "olga", "operator");
    let start = |log: &str| Proc(ns.spawn_portwatch(&["--config", cfg, "up"], &dir.path().join(log)));
    let mut up = start("up.log");
    set_follow_keep_stop(&ns, API, &admin, &operator, || {
        assert_eq!(up.stop(), Some(0));
        up = start("up2.log");
        assert!(
            wait_for(Duration::from_secs(20), || ns.http_get(API, "/healthz")).is_some(),
            "up serves again"
        );
    });
    // One zone, every job done but at most the one the restart cut short, all of its
    // targets covered.
    let zones = task_health_agrees_with_the_jobs(&ns, API, &admin);
    assert_eq!(zones.len(), 1);
    assert_eq!(
        (&zones[0]["zone"], &zones[0]["coverage"]),
        (&"default".into(), &1.0.into()),
        "{zones:?}"
    );
    let failed = zones[0]["failed"].as_u64().expect("failed");
    assert!(
        failed == 0
            || (failed == 1
                && zones[0]["last_failure"]["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("interrupted"))),
        "only the restart may have cut a job short: {zones:?}"
    );
    assert_eq!(up.stop(), Some(0));
}

#[test]
fn the_control_plane_follows_a_cadence_set_by_an_admin_through_kafka() {
    let config = stack_config(
        "high_risk_ports = \"off\"\nservice_detection = \"off\"\nadmin_panels = \"off\"",
        "",
    );
    let stack = Stack::start("sched-so", &config);
    let _redis = stack.ns.serve("127.0.1.2:6379");
    let api = support::scaleout::API;
    let mut control = stack.spawn(&["control"], "control.log");
    // Zone b's probe node was given a scope without zone b's addresses (a
    // misconfiguration): it refuses every job, and the task health says so.
    let narrow = stack.path("probe-b.toml");
    let b_asset = "[[assets]]\ncidr = \"127.0.2.0/24\"\nzone = \"b\"\n";
    assert!(config.contains(b_asset));
    std::fs::write(&narrow, config.replace(b_asset, "")).expect("write");
    let probes = |round: u32| -> [Proc; 2] {
        let b_data = stack.path("probe-b");
        let b_log = stack.path(&format!("probe-b{round}.log"));
        [
            stack.spawn_probe("a"),
            Proc(stack.ns.spawn_portwatch(
                &[
                    "--config",
                    narrow.to_str().expect("utf8"),
                    "--data",
                    b_data.to_str().expect("utf8"),
                    "probe",
                    "--zone",
                    "b",
                    "--node",
                    "probe-b",
                ],
                &b_log,
            )),
        ]
    };
    let mut nodes = probes(0);
    let _projector = stack.spawn(&["project"], "project.log");
    // The control plane creates the topics (the decisions topic the tokens go to).
    wait_for(Duration::from_secs(60), || stack.ns.http_get(api, "/healthz"))
        .unwrap_or_else(|| panic!("control plane not up; log:\n{}", stack.log("control.log")));
    let admin = stack.token("ada", "admin");
    let operator = stack.token("olga", "operator");
    for token in [&admin, &operator] {
        let known = wait_for(Duration::from_secs(20), || {
            let (status, _) = stack.ns.api(api, "GET", "/api/v1/whoami", token, "");
            (status == 200).then_some(())
        });
        assert!(known.is_some(), "token never reached the control plane");
    }
    let mut restarts = 0;
    set_follow_keep_stop(&stack.ns, api, &admin, &operator, || {
        // The probe nodes stop first: the jobs the control plane issues meanwhile
        // wait in the jobs topic, and the probes run them and report them done to
        // the next control plane, which did not issue them.
        for node in &mut nodes {
            assert_eq!(node.stop(), Some(0));
        }
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(control.stop(), Some(0));
        restarts += 1;
        nodes = probes(restarts);
        control = stack.spawn(&["control"], &format!("control{restarts}.log"));
        assert!(
            wait_for(Duration::from_secs(60), || stack.ns.http_get(api, "/healthz")).is_some(),
            "control serves again; log:\n{}",
            stack.log(&format!("control{restarts}.log"))
        );
    });
    // Zone a's node ran every pass over all of its targets; zone b's refused each.
    let zones = task_health_agrees_with_the_jobs(&stack.ns, api, &admin);
    let zone = |name: &str| {
        zones
            .iter()
            .find(|z| z["zone"] == name)
            .unwrap_or_else(|| panic!("no zone {name}: {zones:?}"))
    };
    let (a, b) = (zone("a"), zone("b"));
    assert_eq!(
        (&a["coverage"], &a["last"]["state"]),
        (&1.0.into(), &"done".into()),
        "{a}"
    );
    // A pass a leader left running when it stopped (its node was stopped first)
    // is recorded by the next leader as abandoned; no other fails.
    if !a["last_failure"].is_null() {
        let error = a["last_failure"]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("abandoned: "), "{a}");
    }
    assert!(b["runs"].as_u64() > Some(0) && b["failed"] == b["runs"], "{b}");
    let error = b["last_failure"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused: ") || error.starts_with("abandoned: "),
        "{b}"
    );
    assert_eq!(control.stop(), Some(0));
}

/// A job `up` was running when it was killed ends with it: the next start records it
/// failed ("interrupted"), the job list and the task health say so, and nothing
/// shows it running forever.
#[test]
fn a_job_cut_short_by_a_kill_is_recorded_failed_at_the_next_start() {
    let ns = Netns::new("sched-kill");
    let dir = tempdir();
    let data = dir.path().join("data");
    // All 65,535 ports of 8 addresses at 2,000 probes a second: a job of minutes.
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[scope]
allow_reserved = true

[[assets]]
cidr = "127.0.0.0/29"

[scan]
rate = 2000
timeout = "300ms"

[schedule]
liveness = "off"
full_ports = "1h"
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
    let admin = ns.token(cfg, "ada", "admin");
    let start = |log: &str| Proc(ns.spawn_portwatch(&["--config", cfg, "up"], &dir.path().join(log)));
    let jobs = || listed_jobs(&ns, API, &admin);
    let mut up = start("up.log");
    // The pass, and the attempt of its first chunk.
    let running = wait_for(Duration::from_secs(30), || {
        jobs()?
            .into_iter()
            .find(|j| j["task"] == "full_ports" && j["state"] == "running" && j["pass"].is_null())
    })
    .expect("a full_ports pass running");
    let attempt = wait_for(Duration::from_secs(30), || {
        jobs()?
            .into_iter()
            .find(|j| j["pass"] == running["id"] && j["state"] == "running" && j["hosts_done"] == 0)
    })
    .expect("a chunk of it running");
    // The board writes its jobs to the store behind it: give it a moment.
    std::thread::sleep(Duration::from_secs(2));
    up.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = up.0.wait();

    let mut up = start("up2.log");
    for cut in [&running, &attempt] {
        let listed = wait_for(Duration::from_secs(30), || {
            jobs()?.into_iter().find(|j| j["id"] == cut["id"])
        })
        .expect("the job is still listed");
        assert_eq!(listed["state"], "failed", "{listed}");
        assert!(
            listed["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("interrupted"),
            "{listed}"
        );
    }
    let (status, tasks) = ns.api(API, "GET", "/api/v1/tasks", &admin, "");
    assert_eq!(status, 200);
    let full = tasks
        .as_array()
        .and_then(|t| t.iter().find(|t| t["task"] == "full_ports"))
        .and_then(|t| t["zones"].get(0).cloned())
        .unwrap_or_else(|| panic!("full_ports never ran: {tasks}"));
    assert!(full["failed"].as_u64() >= Some(1), "{full}");
    assert_eq!(full["last_failure"]["id"], running["id"], "{full}");
    assert_eq!(up.stop(), Some(0));
}
