//! Alerts in the embedded deployment, end to end with the real binary in its own
//! namespace: opening Redis's port on a monitored loopback address raises one alert
//! of severity high within two cadences, served at `/api/v1/alerts` and printed by
//! `portwatch alerts --json`; `portwatch rebuild` derives the same alert ids from the
//! log; a SIGKILL and a restart leave exactly one alert per id.

#![allow(clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{loopback_up_config, stderr, stdout, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18082";
const CADENCE_SECS: u64 = 3;
const REDIS: &str = "127.0.0.7:6379";

fn redis_alert(ns: &Netns) -> Option<serde_json::Value> {
    let alerts = ns.get_json(API, "/api/v1/alerts?ip=127.0.0.7")?;
    alerts
        .as_array()?
        .iter()
        .find(|a| a["port"] == 6379 && a["kind"] == "exposure_opened")
        .cloned()
}

/// `portwatch alerts --json` under `data`: one object per line.
fn cli_alerts(ns: &Netns, cfg: &str, data: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["--config", cfg];
    if let Some(d) = data {
        args.extend(["--data", d]);
    }
    args.extend(["alerts", "--json"]);
    let out = ns.portwatch(&args);
    assert!(out.status.success(), "alerts --json: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

fn ids(alerts: &[serde_json::Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn opening_redis_raises_one_high_alert_that_rebuild_and_restart_keep() {
    let ns = Netns::new("alerts");
    let dir = tempdir();
    let config = loopback_up_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.0/28\"\nowner = \"cache-team@example.com\"\nsystem = \"sessions\"",
        &format!("high_risk_ports = \"{CADENCE_SECS}s\""),
        API,
        "[auth]\nanonymous_read = true",
    );
    let cfg = config.to_str().expect("utf8");
    // Something else open from the start, so the first scans have work to record.
    let _mysql = ns.serve("127.0.0.3:3306");
    let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &dir.path().join("up1.log")));
    let log1 = || std::fs::read_to_string(dir.path().join("up1.log")).unwrap_or_default();
    wait_for(Duration::from_secs(30), || {
        let ports = ns.get_json(API, "/api/v1/ports")?;
        (!ports.as_array()?.is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("up never recorded the first port; log:\n{}", log1()));
    assert!(redis_alert(&ns).is_none(), "no Redis alert before Redis");

    // Open Redis's port; the alert must be served within two cadences.
    let opened = Instant::now();
    let _redis = ns.serve(REDIS);
    let alert = wait_for(Duration::from_secs(2 * CADENCE_SECS), || redis_alert(&ns))
        .unwrap_or_else(|| panic!("no alert within two cadences; log:\n{}", log1()));
    let took = opened.elapsed();
    eprintln!(
        "alert served {:.2}s after Redis opened (cadence {CADENCE_SECS}s)",
        took.as_secs_f64()
    );
    assert_eq!(alert["severity"], "high", "{alert}");
    assert_eq!(alert["risk"], "high_risk_port", "{alert}");
    assert_eq!(alert["owner"], "cache-team@example.com", "{alert}");
    assert_eq!(alert["system"], "sessions", "{alert}");
    let id = alert["id"].as_str().expect("id").to_string();
    assert!(id.ends_with(":exposure_opened"), "{id}");

    // The shell sees the same record.
    let listed = cli_alerts(&ns, cfg, None);
    assert!(
        listed.iter().any(|a| a == &alert),
        "alerts --json lacks {alert}: {listed:?}"
    );

    // Further scans see Redis again: still one alert for its episode.
    std::thread::sleep(Duration::from_secs(2 * CADENCE_SECS));
    let served: Vec<serde_json::Value> = ns
        .get_json(API, "/api/v1/alerts")
        .and_then(|v| v.as_array().cloned())
        .expect("alerts");
    assert_eq!(served.iter().filter(|a| a["id"] == id.as_str()).count(), 1);

    // A fold of the whole log derives the same ids.
    let rebuilt = dir.path().join("rebuilt");
    let out = ns.portwatch(&[
        "--config",
        cfg,
        "rebuild",
        "--to",
        rebuilt.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "rebuild: {}", stderr(&out));
    let before_kill = cli_alerts(&ns, cfg, None);
    let rebuilt_alerts = cli_alerts(&ns, cfg, Some(rebuilt.to_str().expect("utf8")));
    // The live store may have folded a few events more than were in the log when
    // rebuild read it; every rebuilt alert is served, with the same id and body.
    for a in &rebuilt_alerts {
        assert!(before_kill.contains(a), "rebuilt alert {a} not served");
    }
    assert!(ids(&rebuilt_alerts).contains(&id), "rebuild lost the Redis alert");

    // SIGKILL mid-stream, restart, let it scan again: no alert twice.
    up.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = up.0.wait();
    let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &dir.path().join("up2.log")));
    std::thread::sleep(Duration::from_secs(2 * CADENCE_SECS));
    assert_eq!(up.stop(), Some(0), "clean stop");
    let after = cli_alerts(&ns, cfg, None);
    let unique: BTreeSet<String> = ids(&after).into_iter().collect();
    assert_eq!(
        unique.len(),
        after.len(),
        "duplicate alert ids after SIGKILL and restart: {after:?}"
    );
    assert_eq!(
        after
            .iter()
            .filter(|a| a["port"] == 6379 && a["kind"] == "exposure_opened")
            .count(),
        1,
        "one Redis alert: {after:?}"
    );
    // And the state after the restart is exactly a fresh fold of the log.
    let (served, rebuilt) = support::served_and_rebuilt(&ns, cfg, &dir.path().join("rebuilt2"));
    assert_eq!(served["alerts"], rebuilt["alerts"]);
    assert!(!served["alerts"].as_array().expect("alerts").is_empty());
}
