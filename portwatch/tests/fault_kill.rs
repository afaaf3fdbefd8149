//! Fault test: SIGKILL `portwatch up` repeatedly while it appends and projects
//! events; after a restart the projected state equals a fresh rebuild from the log
//! (nothing lost, nothing folded twice).

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::{loopback_up_config, stderr, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18081";

fn events_in_log(ns: &Netns, cfg: &str, data: &std::path::Path) -> usize {
    if !data.join("events.db").exists() {
        return 0;
    }
    let out = ns.portwatch(&["--config", cfg, "events", "--limit", "100000000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    support::stdout(&out).lines().count()
}

fn projected_offset(data: &std::path::Path) -> u64 {
    let store = portwatch_stores::EmbeddedStore::open_read_only(data.join("state.db")).expect("store");
    store.next_offset("state", 0).expect("offset")
}

fn log_end(data: &std::path::Path) -> u64 {
    use portwatch_ingest::EventLog;
    let log = portwatch_ingest::EmbeddedLog::open(data.join("events.db")).expect("log");
    log.end_offset(0).expect("end")
}

#[test]
fn sigkill_mid_stream_then_restart_equals_rebuild() {
    let ns = Netns::new("kill");
    let dir = tempdir();
    let data = dir.path().join("data");
    // 64 hosts every second on the high-risk list plus liveness and rechecks: a
    // steady stream of appends and projection commits to be killed in the middle of.
    let config = loopback_up_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.0/26\"",
        "high_risk_ports = \"1s\"\nliveness = \"1s\"\nport_recheck = \"1s\"",
        API,
        "[auth]\nanonymous_read = true",
    );
    let cfg = config.to_str().expect("utf8");
    let mut listeners = vec![
        ns.serve("127.0.0.5:6379"),
        ns.serve("127.0.0.9:3306"),
        ns.serve("127.0.0.17:22"),
        ns.serve("0.0.0.0:27017"),
    ];

    let mut previous = 0;
    for round in 0..4 {
        let log = dir.path().join(format!("run{round}.log"));
        let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log));
        // Wait until this run has appended a good number of new events, then kill it
        // without warning at an arbitrary point of its append/project cycle.
        let target = previous + 150 + round * 37;
        wait_for(Duration::from_secs(30), || {
            (events_in_log(&ns, cfg, &data) >= target).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "run {round} appended too little; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        up.signal(Signal::SIGKILL);
        let _ = up.0.wait();
        previous = events_in_log(&ns, cfg, &data);
        if round == 1 {
            // Close a port halfway, so closures and episodes are part of the history.
            listeners.remove(0);
        }
    }
    assert!(previous >= 600, "only {previous} events were recorded");

    // Phase B: a backlog appended while `up` is down (ad-hoc scans record without
    // projecting), then `up` killed while it folds that backlog. The store must be
    // caught behind the log at least once, or this phase proved nothing.
    let mut caught_behind = 0;
    for attempt in 0..5 {
        for _ in 0..(20 + attempt * 10) {
            let out = ns.portwatch(&[
                "--config",
                cfg,
                "scan",
                "127.0.0.0/26",
                "--record",
                "--rate",
                "100000",
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let log = dir.path().join(format!("backlog{attempt}.log"));
        let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log));
        wait_for(Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("projection resuming").then_some(())
        })
        .expect("projector started");
        up.signal(Signal::SIGKILL);
        let _ = up.0.wait();
        if projected_offset(&data) < log_end(&data) {
            caught_behind += 1;
            if caught_behind >= 2 {
                break;
            }
        }
    }
    assert!(caught_behind >= 1, "never killed the projector mid catch-up");

    // Restart, let it catch up and run a little, then stop it cleanly.
    let log = dir.path().join("final.log");
    let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log));
    wait_for(Duration::from_secs(30), || {
        let health = ns.get_json(API, "/healthz")?;
        (health["projection_lag"] == 0).then_some(())
    })
    .expect("projection caught up after restart");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(up.stop(), Some(0));

    let (served, rebuilt) = support::served_and_rebuilt(&ns, cfg, &dir.path().join("rebuilt"));
    assert_eq!(
        served, rebuilt,
        "state after SIGKILLs differs from a rebuild of the log"
    );

    // The state is not trivially empty: the open ports and the closed one are there.
    let ports = served["ports"].as_array().expect("ports");
    let state_of = |ip: &str, port: u64| {
        ports
            .iter()
            .find(|p| p["ip"] == ip && p["port"] == port)
            .map(|p| p["state"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(state_of("127.0.0.9", 3306).as_deref(), Some("open"));
    assert_eq!(
        state_of("127.0.0.17", 22).as_deref(),
        None,
        "22 is not on the high-risk list"
    );
    assert_eq!(state_of("127.0.0.5", 6379).as_deref(), Some("closed"));
    // 0.0.0.0:27017 answers on every loopback address of the namespace.
    let mongo = ports
        .iter()
        .filter(|p| p["port"] == 27017 && p["state"] == "open")
        .count();
    assert_eq!(mongo, 64);
    drop(listeners);
}
