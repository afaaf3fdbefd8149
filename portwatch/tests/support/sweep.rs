//! Timeliness at scale, the same check in both deployments: while a full-port pass
//! runs, a high-risk port opened on a live host is found within one high-risk
//! cadence plus one chunk; a cadence shorter than the pass is an overrun and
//! nothing piles up.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{wait_for, Netns, Server};

fn listed(ns: &Netns, api: &str) -> Vec<Value> {
    ns.get_json(api, "/api/v1/jobs?limit=10000")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The full-port pass running, once some of its chunks ended.
fn sweeping(ns: &Netns, api: &str) -> Option<Value> {
    listed(ns, api).into_iter().find(|j| {
        j["task"] == "full_ports"
            && j["pass"].is_null()
            && j["state"] == "running"
            && j["chunks_ended"].as_u64() >= Some(1)
    })
}

/// While a full-port pass runs on `api`, open a port with `open` (a high-risk port
/// of a live host in the assets, `ip:port`) and wait until the API lists it open:
/// within `cadence` + `chunk` (+ 3 s for the fold and the API). The time it took.
pub fn found_while_sweeping(
    ns: &Netns,
    api: &str,
    (ip, port): (&str, u16),
    cadence: Duration,
    chunk: Duration,
) -> (Duration, Server) {
    let pass = wait_for(Duration::from_secs(90), || sweeping(ns, api)).expect("a full-port pass running");
    let server = ns.serve(&format!("{ip}:{port}"));
    let opened = Instant::now();
    let seen = wait_for(cadence + chunk + Duration::from_secs(30), || {
        let rows = ns.get_json(api, &format!("/api/v1/ports?ip={ip}"))?;
        rows.as_array()?
            .iter()
            .any(|r| r["port"] == port)
            .then(|| opened.elapsed())
    })
    .unwrap_or_else(|| panic!("{ip}:{port} never found"));
    let still = listed(ns, api)
        .into_iter()
        .find(|j| j["id"] == pass["id"])
        .expect("the sweep listed");
    assert_eq!(
        still["state"], "running",
        "the sweep ended before: nothing shown: {still}"
    );
    assert!(
        seen <= cadence + chunk + Duration::from_secs(3),
        "found after {seen:?}, more than one high-risk cadence ({cadence:?}) plus one chunk ({chunk:?})"
    );
    (seen, server)
}

/// Task health of `task` in its first zone (it ran).
pub fn task_zone(ns: &Netns, api: &str, task: &str) -> Value {
    let tasks = ns.get_json(api, "/api/v1/tasks").expect("task health");
    tasks
        .as_array()
        .and_then(|t| t.iter().find(|t| t["task"] == task))
        .and_then(|t| t["zones"].get(0).cloned())
        .unwrap_or_else(|| panic!("{task} never ran: {tasks}"))
}

/// The attempts of `chunk` of `pass` among `attempts`, once checked that the chunk
/// was issued once per try: tries 1, 2, ... with no gap or repeat.
pub fn tries_of<'a>(pass: &Value, attempts: &[&'a Value], chunk: u64) -> Vec<&'a Value> {
    let of: Vec<&Value> = attempts.iter().copied().filter(|a| a["chunk"] == chunk).collect();
    let mut tries: Vec<u64> = of.iter().filter_map(|a| a["try_no"].as_u64()).collect();
    tries.sort_unstable();
    assert_eq!(
        tries,
        (1..=of.len() as u64).collect::<Vec<_>>(),
        "{pass}: chunk {chunk}: {of:#?}"
    );
    of
}

/// The full-port task overran its cadence, and nothing piled up: one pass at a
/// time, each chunk issued once per try.
pub fn overran_without_pile_up(ns: &Netns, api: &str) {
    let zone = task_zone(ns, api, "full_ports");
    assert!(
        zone["overruns"].as_u64() > Some(0),
        "a cadence shorter than the pass: {zone}"
    );
    let all = listed(ns, api);
    let passes: Vec<&Value> = all
        .iter()
        .filter(|j| j["task"] == "full_ports" && j["pass"].is_null())
        .collect();
    let running = passes.iter().filter(|p| p["state"] == "running").count();
    assert!(
        running <= 1,
        "{running} full-port passes running at once: {passes:#?}"
    );
    for p in &passes {
        let of: Vec<&Value> = all.iter().filter(|j| j["pass"] == p["id"]).collect();
        let ended = p["chunks_ended"].as_u64().unwrap_or(0);
        let tried: std::collections::BTreeSet<u64> = of.iter().filter_map(|a| a["chunk"].as_u64()).collect();
        // Every chunk issued at most once per try; no more chunks than the pass has.
        assert!(tried.len() as u64 <= p["chunks"].as_u64().unwrap_or(0), "{p}");
        for chunk in &tried {
            tries_of(p, &of, *chunk);
        }
        assert!(of.len() as u64 >= ended.min(1), "{p}");
    }
}
