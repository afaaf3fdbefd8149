//! Notifications in the embedded deployment, end to end: the real binary in its own
//! namespace, a real HTTP receiver (Python's http.server, `support/receiver.py`)
//! beside it, which checks each signature with Python's own HMAC.
//!
//! - 30 ports opening at once on a host are one signed webhook notification listing
//!   all 30; a port that closes and reopens within the group interval sends nothing;
//!   deleting the projection state and replaying the whole log sends nothing.
//! - The first pass over a new asset records its low-risk ports without paging and
//!   pages for its high-risk port.
//! - A receiver answering 500 three times, then 200, gets the notification exactly
//!   once, with a SIGKILL of portwatch between attempts.

#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::receivers::{self, received, SECRET};
use support::{stderr, stdout, tempdir, wait_for, write_config, Netns, Proc, Server};

const API: &str = "127.0.0.1:18090";
const HOOK: &str = "127.0.0.1:9999";

/// The notification a received webhook body carries.
fn notification(request: &serde_json::Value) -> serde_json::Value {
    receivers::body(request)["notification"].clone()
}

fn receiver(ns: &Netns, log: &Path, fail_first: u32) -> Proc {
    receivers::http(ns, HOOK, log, fail_first)
}

fn ports_of(n: &serde_json::Value) -> Vec<u64> {
    let mut ports: Vec<u64> = n["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["port"].as_u64().expect("port"))
        .collect();
    ports.sort_unstable();
    ports
}

fn config(dir: &Path, body: &str) -> String {
    let data = dir.join("data");
    let text = format!(
        r#"
[scope]
allow_reserved = true

[store]
path = "{}"

[auth]
anonymous_read = true

[api]
listen = "{API}"

[[channels]]
name = "soc"
kind = "webhook"
url = "http://{HOOK}/hook"
secret = "{SECRET}"
{body}
"#,
        data.display()
    );
    write_config(dir, &text).to_str().expect("utf8").to_string()
}

fn up(ns: &Netns, cfg: &str, log: &Path) -> Proc {
    Proc(ns.spawn_portwatch(&["up", "--config", cfg], log))
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Alerts served, each with its notifications.
fn alerts(ns: &Netns, ip: &str) -> Vec<serde_json::Value> {
    ns.get_json(API, &format!("/api/v1/alerts?ip={ip}"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn a_job_done(ns: &Netns) -> Option<()> {
    let jobs = ns.get_json(API, "/api/v1/jobs")?;
    jobs.as_array()?
        .iter()
        .any(|j| j["state"] == "done")
        .then_some(())
}

#[test]
fn thirty_ports_are_one_signed_notification_and_neither_a_flap_nor_a_replay_sends_more() {
    let ns = Netns::new("notify30");
    let dir = tempdir();
    let hook_log = dir.path().join("hook.jsonl");
    let _receiver = receiver(&ns, &hook_log, 0);
    let cfg = config(
        dir.path(),
        r#"
[[assets]]
cidr = "127.0.0.5/32"
owner = "web-team@example.com"
system = "shop"

[scan]
rate = 100000
timeout = "300ms"
high_risk_ports = "20001-20030"

[schedule]
high_risk_ports = "2s"

[alerts]
group_wait = "3s"
group_interval = "2m"
repeat_interval = "4h"
baseline = true
"#,
    );
    let log1 = dir.path().join("up1.log");
    let mut pw = up(&ns, &cfg, &log1);
    // A first scan finds nothing open: the host's baseline is "all closed".
    wait_for(Duration::from_secs(30), || a_job_done(&ns))
        .unwrap_or_else(|| panic!("no scan finished; log:\n{}", log_of(&log1)));

    let opened = std::time::Instant::now();
    let servers: Vec<Server> = (20001..=20030)
        .map(|p| ns.serve(&format!("127.0.0.5:{p}")))
        .collect();
    let first = wait_for(Duration::from_secs(30), || received(&hook_log).first().cloned())
        .unwrap_or_else(|| panic!("no notification; log:\n{}", log_of(&log1)));
    eprintln!(
        "30 ports opened -> one webhook notification in {:.1} s (scan cadence 2 s, group_wait 3 s)",
        opened.elapsed().as_secs_f64()
    );
    // More may not come: wait out another group_wait and a few scans.
    std::thread::sleep(Duration::from_secs(6));
    let got = received(&hook_log);
    assert_eq!(got.len(), 1, "one notification for 30 ports: {got:#?}");
    assert_eq!(first["signature_valid"], true, "{first}");
    assert_eq!(first["path"], "/hook");
    let n = notification(&first);
    assert_eq!(n["kind"], "firing");
    assert_eq!(n["ip"], "127.0.0.5");
    assert_eq!(n["owner"], "web-team@example.com");
    assert_eq!(ports_of(&n), (20001..=20030).collect::<Vec<u64>>());
    assert_eq!(first["headers"]["idempotency-key"], n["id"], "{first}");

    // The API shows the delivery on every alert it reported.
    let served = alerts(&ns, "127.0.0.5");
    let opened: Vec<&serde_json::Value> = served.iter().filter(|a| a["kind"] == "exposure_opened").collect();
    assert_eq!(opened.len(), 30);
    for a in &opened {
        let told = a["notifications"].as_array().expect("notifications");
        assert_eq!(told.len(), 1, "{a}");
        assert_eq!(told[0]["id"], n["id"]);
        assert_eq!(told[0]["deliveries"][0]["channel"], "soc");
        assert_eq!(told[0]["deliveries"][0]["outcome"], "delivered");
        assert_eq!(told[0]["deliveries"][0]["attempts"], 1);
    }

    // One port closes (two covering misses) and opens again: a flap, not news.
    let mut servers = servers;
    drop(servers.remove(0));
    wait_for(Duration::from_secs(30), || {
        alerts(&ns, "127.0.0.5")
            .iter()
            .any(|a| a["kind"] == "exposure_closed" && a["port"] == 20001)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("20001 never closed; log:\n{}", log_of(&log1)));
    servers.push(ns.serve("127.0.0.5:20001"));
    wait_for(Duration::from_secs(30), || {
        let reopened = alerts(&ns, "127.0.0.5")
            .iter()
            .filter(|a| a["kind"] == "exposure_opened" && a["port"] == 20001)
            .count();
        (reopened == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("20001 never reopened; log:\n{}", log_of(&log1)));
    std::thread::sleep(Duration::from_secs(6));
    let got = received(&hook_log);
    assert_eq!(got.len(), 1, "the flap sent something: {got:#?}");

    // Delete the projection state and replay the whole log: nothing is sent again.
    assert_eq!(pw.stop(), Some(0), "clean stop");
    std::fs::remove_file(dir.path().join("data/state.db")).expect("delete state");
    let log2 = dir.path().join("up2.log");
    let _pw = up(&ns, &cfg, &log2);
    wait_for(Duration::from_secs(30), || {
        (alerts(&ns, "127.0.0.5").len() >= 32).then_some(())
    })
    .unwrap_or_else(|| panic!("the replay did not restore the alerts; log:\n{}", log_of(&log2)));
    std::thread::sleep(Duration::from_secs(8));
    let got = received(&hook_log);
    assert_eq!(got.len(), 1, "the replay sent something: {got:#?}");
    assert!(
        log_of(&log2).contains("notifier resumed from the journal"),
        "{}",
        log_of(&log2)
    );
    let replayed = alerts(&ns, "127.0.0.5");
    let told = replayed
        .iter()
        .filter(|a| a["notifications"].as_array().is_some_and(|n| !n.is_empty()))
        .count();
    assert_eq!(told, 30, "the ledger still joins the replayed alerts");
    drop(servers);
}

#[test]
fn a_new_assets_first_pass_pages_only_for_its_high_risk_port() {
    let ns = Netns::new("notifybase");
    let dir = tempdir();
    let hook_log = dir.path().join("hook.jsonl");
    let _receiver = receiver(&ns, &hook_log, 0);
    // Open before portwatch ever looked: the new asset's baseline.
    let _servers: Vec<Server> = ["127.0.0.6:2222", "127.0.0.6:12345", "127.0.0.6:6379"]
        .iter()
        .map(|a| ns.serve(a))
        .collect();
    let cfg = config(
        dir.path(),
        r#"
[[assets]]
cidr = "127.0.0.6/32"

[scan]
rate = 100000
timeout = "300ms"

[schedule]
full_ports = "3s"

[alerts]
group_wait = "2s"
baseline = true
"#,
    );
    let log = dir.path().join("up.log");
    let _pw = up(&ns, &cfg, &log);
    let first = wait_for(Duration::from_secs(30), || received(&hook_log).first().cloned())
        .unwrap_or_else(|| panic!("the high-risk port paged nobody; log:\n{}", log_of(&log)));
    std::thread::sleep(Duration::from_secs(6));
    let got = received(&hook_log);
    assert_eq!(got.len(), 1, "{got:#?}");
    let n = notification(&first);
    assert_eq!(ports_of(&n), [6379], "only the high-risk port pages: {n}");
    assert_eq!(n["severity"], "high");
    // The low-risk ports are on record, marked baseline, told to nobody.
    let served = alerts(&ns, "127.0.0.6");
    for port in [2222, 12345] {
        let a = served
            .iter()
            .find(|a| a["port"] == port && a["kind"] == "exposure_opened")
            .unwrap_or_else(|| panic!("no alert for {port}: {served:#?}"));
        assert_eq!(a["baseline"], true, "{a}");
        assert_eq!(a["notifications"], serde_json::json!([]), "{a}");
    }
}

#[test]
fn a_failing_receiver_gets_the_notification_exactly_once_across_a_sigkill() {
    let ns = Netns::new("notifyretry");
    let dir = tempdir();
    let hook_log = dir.path().join("hook.jsonl");
    let _receiver = receiver(&ns, &hook_log, 3);
    let _redis = ns.serve("127.0.0.7:6379");
    let cfg = config(
        dir.path(),
        r#"
[[assets]]
cidr = "127.0.0.7/32"

[scan]
rate = 100000
timeout = "300ms"

[schedule]
high_risk_ports = "2s"

[alerts]
group_wait = "1s"
baseline = false
"#,
    );
    let log1 = dir.path().join("up1.log");
    let mut pw = up(&ns, &cfg, &log1);
    // Two attempts answered 500 (backoff 1 s, then 2 s): kill between attempts.
    wait_for(Duration::from_secs(40), || {
        (received(&hook_log).len() >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("no two attempts; log:\n{}", log_of(&log1)));
    std::thread::sleep(Duration::from_millis(300));
    pw.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = pw.0.wait();
    assert_eq!(received(&hook_log).len(), 2, "killed between attempts");

    let log2 = dir.path().join("up2.log");
    let _pw = up(&ns, &cfg, &log2);
    wait_for(Duration::from_secs(40), || {
        received(&hook_log)
            .iter()
            .any(|r| r["status"] == 200)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("never delivered; log:\n{}", log_of(&log2)));
    std::thread::sleep(Duration::from_secs(5));
    let got = received(&hook_log);
    let statuses: Vec<u64> = got
        .iter()
        .map(|r| r["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        [500, 500, 500, 200],
        "three failures, then one delivery"
    );
    let keys: std::collections::BTreeSet<&str> = got
        .iter()
        .map(|r| r["headers"]["idempotency-key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys.len(), 1, "every attempt carries the same idempotency key");
    assert!(got.iter().all(|r| r["signature_valid"] == true));

    // The delivery log says the same: delivered, after every attempt was recorded.
    let out = ns.portwatch(&["--config", &cfg, "alerts", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let redis = listed
        .iter()
        .find(|a| a["port"] == 6379 && a["kind"] == "exposure_opened")
        .expect("redis alert");
    let delivery = &redis["notifications"][0]["deliveries"][0];
    assert_eq!(delivery["outcome"], "delivered", "{redis}");
    assert_eq!(delivery["last_status"], 200, "{redis}");
    let attempts = delivery["attempts"].as_u64().expect("attempts");
    assert!((3..=4).contains(&attempts), "attempts journalled: {attempts}");
    // And `/metrics` counts them per channel.
    let (_, metrics) = ns.http_get(API, "/metrics").expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portwatch_deliveries_total{")
                && l.contains("channel=\"soc\"")
                && l.contains("outcome=\"delivered\"")),
        "{metrics}"
    );
}
