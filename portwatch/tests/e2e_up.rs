//! End to end with the real binary in its own namespace: `portwatch up` finds a port
//! opened after it started within two cadences, survives a restart without losing or
//! double-counting anything, and declares the port closed after the configured
//! number of misses, with an episode that has opened_at, closed_at and an MTTD bound.

mod support;

use std::time::{Duration, Instant};

use support::{tempdir, wait_for, write_config, Netns, Proc};

const API: &str = "127.0.0.1:18080";
const CADENCE_SECS: u64 = 3;

fn port_row(ns: &Netns, ip: &str, port: u16, state: &str) -> Option<serde_json::Value> {
    let rows = ns.get_json(API, &format!("/api/v1/ports?state={state}&ip={ip}"))?;
    rows.as_array()?.iter().find(|r| r["port"] == port).cloned()
}

fn host_scans(ns: &Netns, ip: &str) -> Option<u64> {
    let hosts = ns.get_json(API, "/api/v1/hosts")?;
    hosts.as_array()?.iter().find(|h| h["ip"] == ip)?["scans"].as_u64()
}

#[test]
fn up_detects_opening_and_closing_across_a_restart() {
    let ns = Netns::new("up");
    let dir = tempdir();
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[scope]
allow_reserved = true

[[assets]]
cidr = "127.0.0.2/32"
owner = "db-team@example.com"
system = "billing"
[[assets]]
cidr = "127.0.0.3/32"

[scan]
rate = 100000
timeout = "500ms"

[schedule]
high_risk_ports = "{c}s"
full_ports = "{c}s"

[projection]
close_after_misses = 2

[store]
path = "{data}"

[auth]
anonymous_read = true

[api]
listen = "{API}"
"#,
            c = CADENCE_SECS,
            data = data.display()
        ),
    );
    let cfg = config.to_str().expect("utf8");
    let log1 = dir.path().join("up1.log");
    let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log1));
    let cadence = Duration::from_secs(CADENCE_SECS);

    // Let at least one full scan cover both hosts before anything opens, so the
    // episodes get an MTTD bound.
    wait_for(Duration::from_secs(30), || {
        (host_scans(&ns, "127.0.0.2")? >= 2 && host_scans(&ns, "127.0.0.3")? >= 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no scans recorded; log:\n{}",
            std::fs::read_to_string(&log1).unwrap_or_default()
        )
    });

    // Open a high-risk port (Redis) and an ordinary high port.
    let redis = ns.serve("127.0.0.2:6379");
    let other = ns.serve("127.0.0.3:31337");
    let opened = Instant::now();
    let redis_row = wait_for(2 * cadence, || port_row(&ns, "127.0.0.2", 6379, "open"))
        .expect("6379 open within two cadences");
    let other_row = wait_for((2 * cadence).saturating_sub(opened.elapsed()), || {
        port_row(&ns, "127.0.0.3", 31337, "open")
    })
    .expect("31337 open within two cadences");
    assert_eq!(redis_row["proto"], "tcp");
    assert_eq!(redis_row["risk"], "high_risk_port");
    assert_eq!(redis_row["owner"], "db-team@example.com");
    assert_eq!(other_row["risk"], "risk_port");
    let episode_id = redis_row["episode_id"].as_str().expect("episode id").to_string();

    // Restart between the two steps.
    assert_eq!(up.stop(), Some(0), "clean exit on SIGTERM");
    let before_restart = ns.get_json(API, "/api/v1/ports");
    assert!(before_restart.is_none(), "API must be down while stopped");
    let log2 = dir.path().join("up2.log");
    let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log2));
    let after = wait_for(Duration::from_secs(15), || {
        port_row(&ns, "127.0.0.2", 6379, "open")
    })
    .expect("state survives restart");
    assert_eq!(
        after["episode_id"],
        episode_id.as_str(),
        "same episode after restart"
    );
    assert_eq!(after["first_seen"], redis_row["first_seen"]);

    // Close both; they must be declared closed after two covering misses.
    drop(redis);
    drop(other);
    let closed_at = Instant::now();
    let closed =
        wait_for(4 * cadence, || port_row(&ns, "127.0.0.2", 6379, "closed")).expect("6379 declared closed");
    assert!(
        closed_at.elapsed() <= 4 * cadence,
        "closure took {:?}",
        closed_at.elapsed()
    );
    assert_eq!(closed["misses"], 2);
    wait_for(4 * cadence, || port_row(&ns, "127.0.0.3", 31337, "closed")).expect("31337 declared closed");

    let episodes = ns
        .get_json(API, "/api/v1/episodes?ip=127.0.0.2")
        .expect("episodes");
    let episodes = episodes.as_array().expect("array");
    let ep = episodes.iter().find(|e| e["port"] == 6379).expect("episode");
    assert_eq!(
        episodes.iter().filter(|e| e["port"] == 6379).count(),
        1,
        "one episode, not one per run"
    );
    assert_eq!(ep["id"], episode_id.as_str());
    assert!(ep["opened_at"].is_string());
    assert!(ep["closed_at"].is_string(), "{ep}");
    assert!(ep["last_negative_before_open"].is_string(), "{ep}");
    let mttd = ep["mttd_bound_secs"].as_i64().expect("mttd bound");
    assert!(
        (0..=2 * CADENCE_SECS as i64 + 1).contains(&mttd),
        "mttd bound {mttd}s"
    );
    assert!(ep["duration_secs"].as_i64().expect("duration") >= 0);

    // Nothing counted twice: the served state equals a fresh fold of the whole log.
    assert_eq!(up.stop(), Some(0));
    let (served, rebuilt) = support::served_and_rebuilt(&ns, cfg, &dir.path().join("rebuilt"));
    assert_eq!(served, rebuilt, "served state differs from a rebuild of the log");
    // And the host scan counts match the events in the log one for one.
    let events = ns.portwatch(&["--config", cfg, "events", "--limit", "1000000"]);
    let scans_in_log = support::stdout(&events)
        .lines()
        .filter(|l| l.contains("\"kind\":\"host_scan\"") && l.contains("\"ip\":\"127.0.0.2\""))
        .count() as u64;
    // The shell queries read the same store.
    let ports = ns.portwatch(&["--config", cfg, "ports", "--state", "all", "--json"]);
    assert!(ports.status.success(), "{}", support::stderr(&ports));
    let rows: Vec<serde_json::Value> = support::stdout(&ports)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["state"] == "closed"));
    let table = ns.portwatch(&["--config", cfg, "episodes", "--closed"]);
    let table = support::stdout(&table);
    assert!(
        table.starts_with("IP") && table.contains("6379/tcp") && table.contains("31337/tcp"),
        "{table}"
    );
    let hosts = ns.portwatch(&["--config", cfg, "hosts", "--json"]);
    assert_eq!(support::stdout(&hosts).lines().count(), 2);

    let host = served["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["ip"] == "127.0.0.2")
        .expect("host")
        .clone();
    assert_eq!(host["scans"].as_u64(), Some(scans_in_log));
}

#[test]
fn up_without_config_monitors_the_loopback_demo_and_says_so() {
    let ns = Netns::new("demo");
    let dir = tempdir();
    let log = dir.path().join("demo.log");
    let data = dir.path().join("data");
    let _redis = ns.serve("127.0.0.1:6379");
    let out = dir.path().join("demo.out");
    let mut up = Proc(ns.spawn_portwatch_stdout(&["--data", data.to_str().expect("utf8"), "up"], &log, &out));
    // A first start prints the admin's token, which reads need.
    let token = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&out).ok()?;
        text.split_whitespace()
            .find(|w| w.starts_with("pwt_"))
            .map(str::to_string)
    })
    .expect("the first admin token on stdout");
    let bearer = format!("Bearer {token}");
    // The demo's high-risk task runs at start, so Redis on loopback shows up at once.
    let row = wait_for(Duration::from_secs(20), || {
        let answer = ns.http(
            "GET",
            "127.0.0.1:7678",
            "/api/v1/ports",
            &[("Authorization", bearer.as_str())],
            "",
        )?;
        let rows: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        rows.as_array()?.iter().find(|r| r["port"] == 6379).cloned()
    })
    .expect("demo finds 127.0.0.1:6379");
    assert_eq!(
        ns.http_get("127.0.0.1:7678", "/api/v1/ports").map(|(s, _)| s),
        Some(401),
        "no token, no data"
    );
    assert_eq!(row["ip"], "127.0.0.1");
    assert_eq!(row["risk"], "high_risk_port");
    assert_eq!(up.stop(), Some(0));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("no config file given: monitoring the loopback demo scope"),
        "{text}"
    );
    let schedule_warning = text.contains("not implemented");
    assert!(!schedule_warning, "demo schedules only implemented tasks: {text}");
}

#[test]
fn up_beside_a_program_on_its_port_says_what_to_change() {
    let ns = Netns::new("busy");
    let dir = tempdir();
    // Somebody's development server on portwatch's default port.
    let _busy = ns.listen("127.0.0.1:7678");
    let data = dir.path().join("data");
    let out = ns.portwatch(&["--data", data.to_str().expect("utf8"), "up"]);
    assert!(!out.status.success(), "up must not start beside it");
    let err = support::stderr(&out);
    assert!(
        err.contains("127.0.0.1:7678") && err.contains("[api] listen") && err.contains("--listen"),
        "{err}"
    );
    // The default port is portwatch's own: 8080 (Tomcat, Jenkins, dev servers) is free.
    let _tomcat = ns.listen("127.0.0.1:8080");
    drop(_busy);
    let log = dir.path().join("up.log");
    let mut up = Proc(ns.spawn_portwatch(&["--data", data.to_str().expect("utf8"), "up"], &log));
    let healthy = wait_for(Duration::from_secs(20), || {
        ns.http_get("127.0.0.1:7678", "/healthz")
            .filter(|(s, _)| *s == 200)
    });
    assert!(
        healthy.is_some(),
        "up beside a program on 8080: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(up.stop(), Some(0));
}
