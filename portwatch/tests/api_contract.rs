//! One API, two deployments: the same requests against `portwatch up` (embedded)
//! and `portwatch control` (tansu + ClickHouse) after the same fleet changes give the
//! same answers: paths, JSON shapes, values (modulo ordering and timing fields),
//! query parameters, paging and error bodies.
//!
//! Both deployments watch one fleet at once, inside one namespace of the test's own:
//! the embedded one scans it itself, the scale-out one through a control plane, two
//! probe nodes in two zones and a projector. Ports open, one closes; then every
//! producer stops and both deployments are served again from what they recorded
//! (schedule off), so nothing moves while the answers are compared.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::scaleout::{Stack, BROKER_PORT, CH_PORT};
use support::{wait_for, Proc};

const CONTROL_API: &str = "127.0.0.1:18080";
const EMBEDDED_API: &str = "127.0.0.1:18081";

fn config(schedule: &str) -> String {
    format!(
        r#"[node]
name = "contract"

[scope]
allow_reserved = true

[[assets]]
cidr = "127.0.1.0/28"
zone = "a"

[[assets]]
cidr = "127.0.1.2/32"
owner = "db-team"
system = "billing"
zone = "a"

[[assets]]
cidr = "127.0.2.0/28"
owner = "web-team"
system = "storefront"
zone = "b"

[[assets]]
cidr = "127.0.2.9/32"
zone = "b"

[scan]
rate = 100000
timeout = "300ms"
high_risk_ports = "22,80,3306,5432,6379,8080,27017"

[schedule]
{schedule}

[kafka]
brokers = "127.0.0.1:{BROKER_PORT}"
partitions = 4
timeout = "5s"

[kafka.consumer]
"session.timeout.ms" = "2000"
"heartbeat.interval.ms" = "500"

[clickhouse]
url = "http://127.0.0.1:{CH_PORT}"

[projector]
batch_wait = "100ms"
checkpoint_interval = "1s"

[probe]
heartbeat = "1s"

[auth]
anonymous_read = true

[api]
listen = "{CONTROL_API}"
"#
    )
}

const FLEET: &[(&str, u16)] = &[
    ("127.0.1.2", 22),
    ("127.0.1.2", 6379),
    ("127.0.1.3", 3306),
    ("127.0.1.3", 8080),
    ("127.0.2.2", 6379),
    ("127.0.2.5", 5432),
    ("127.0.2.5", 27017),
    ("127.0.2.9", 80),
];

/// The port closed half way.
const CLOSING: (&str, u16) = ("127.0.2.5", 27017);

/// Fields whose values depend on when and how often each deployment scanned, and
/// ids derived from event ids (each deployment's probes made their own events).
const TIMING_AND_IDS: &[&str] = &[
    "first_seen",
    "last_seen",
    "last_change",
    "misses",
    "missing_since",
    "rtt_ms",
    "episode_id",
    "id",
    "opened_at",
    "last_negative_before_open",
    "mttd_bound_secs",
    "closed_at",
    "closed_declared_at",
    "duration_secs",
    "observations",
    "at",
    "last_alive",
    "last_checked",
    "scans",
    "coverage",
];

fn open_set(stack: &Stack, api: &str) -> Option<BTreeSet<(String, u64)>> {
    let ports = stack.ns.get_json(api, "/api/v1/ports")?;
    Some(
        ports
            .as_array()?
            .iter()
            .map(|p| (p["ip"].as_str().unwrap().to_string(), p["port"].as_u64().unwrap()))
            .collect(),
    )
}

fn closed_episode(stack: &Stack, api: &str) -> Option<()> {
    let eps = stack.ns.get_json(api, "/api/v1/episodes?open=false")?;
    eps.as_array()?
        .iter()
        .any(|e| e["ip"] == CLOSING.0 && e["port"] == CLOSING.1)
        .then_some(())
}

/// The keys of every object, recursively: the JSON shape.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Null => Value::Null,
        _ => Value::String("scalar".into()),
    }
}

/// Whether `a` and `b` have one shape, an optional field (null on one side) matching
/// anything: a job interrupted by the stop is a `last_failure` in one deployment and
/// none in the other, and both are the same contract.
fn shapes_agree(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => true,
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| shapes_agree(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.iter().zip(y).all(|(v, w)| shapes_agree(v, w)),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        _ => true,
    }
}

/// `v` without timing fields and ids.
fn untimed(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !TIMING_AND_IDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), untimed(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(untimed).collect()),
        other => other.clone(),
    }
}

struct Answer {
    status: u16,
    next: Option<String>,
    body: Value,
}

fn get(stack: &Stack, api: &str, path: &str) -> Answer {
    let support::HttpAnswer {
        status,
        headers,
        body,
    } = stack
        .ns
        .http_get_full(api, path)
        .unwrap_or_else(|| panic!("{api}{path}: no answer"));
    let next = headers
        .iter()
        .find(|(k, _)| k == "x-next-cursor")
        .map(|(_, v)| v.clone());
    let body = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{api}{path}: not JSON ({e}): {body}"));
    Answer { status, next, body }
}

/// Every row of `path`, `limit` at a time, following `X-Next-Cursor`.
fn walk(stack: &Stack, api: &str, path: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let answer = get(stack, api, &url);
        assert_eq!(answer.status, 200, "{api}{url}: {}", answer.body);
        let page = answer.body.as_array().unwrap().clone();
        assert!(page.len() <= limit, "{api}{url}: {} rows", page.len());
        rows.extend(page);
        pages += 1;
        assert!(pages < 100, "paging does not end");
        match answer.next {
            Some(next) => cursor = Some(next),
            None => return (rows, pages),
        }
    }
}

#[test]
fn embedded_and_scale_out_answer_the_same_api_the_same_way() {
    let scanning = config("high_risk_ports = \"2s\"");
    let stack = Stack::start("contract", &scanning);
    let data = stack.path("embedded");
    let data = data.to_str().unwrap();
    let mut fleet: Vec<_> = FLEET
        .iter()
        .map(|(ip, port)| stack.ns.serve(&format!("{ip}:{port}")))
        .collect();

    // --- both deployments watch the fleet ---------------------------------------
    let mut producers: Vec<Proc> = vec![
        stack.spawn(&["--data", data, "up", "--listen", EMBEDDED_API], "up.log"),
        stack.spawn(&["control"], "control.log"),
        stack.spawn_probe("a"),
        stack.spawn_probe("b"),
    ];
    let mut projector = stack.spawn(&["project"], "project.log");
    let want: BTreeSet<(String, u64)> = FLEET
        .iter()
        .map(|(ip, p)| (ip.to_string(), u64::from(*p)))
        .collect();
    for api in [EMBEDDED_API, CONTROL_API] {
        let seen = wait_for(Duration::from_secs(60), || {
            open_set(&stack, api).filter(|s| *s == want)
        });
        assert!(
            seen.is_some(),
            "{api} never showed the fleet; up:\n{}\ncontrol:\n{}",
            stack.log("up.log"),
            stack.log("control.log")
        );
    }

    // --- a fleet change: one port closes -----------------------------------------
    let closing = FLEET.iter().position(|f| *f == CLOSING).unwrap();
    drop(fleet.remove(closing));
    for api in [EMBEDDED_API, CONTROL_API] {
        assert!(
            wait_for(Duration::from_secs(30), || closed_episode(&stack, api)).is_some(),
            "{api}: the closed port's episode never ended"
        );
    }

    // Jobs and nodes while both run: the same shapes.
    for path in ["/api/v1/jobs?limit=3", "/api/v1/nodes"] {
        let (e, c) = (get(&stack, EMBEDDED_API, path), get(&stack, CONTROL_API, path));
        assert_eq!((e.status, c.status), (200, 200), "{path}");
        let (e, c) = (
            e.body.as_array().unwrap().clone(),
            c.body.as_array().unwrap().clone(),
        );
        assert!(!e.is_empty() && !c.is_empty(), "{path}: {e:?} / {c:?}");
        let shapes =
            |rows: &[Value]| -> BTreeSet<String> { rows.iter().map(|r| shape(r).to_string()).collect() };
        // Optional fields are null in some rows: compare the key sets.
        let keys = |rows: &[Value]| -> BTreeSet<String> {
            rows.iter()
                .flat_map(|r| r.as_object().unwrap().keys().cloned())
                .collect()
        };
        assert_eq!(keys(&e), keys(&c), "{path}: {e:?} / {c:?}");
        assert!(!shapes(&e).is_empty());
    }

    // The plan: the embedded process is one zone holding every asset with its one
    // node; the scale-out deployment plans each zone with the nodes heard from. Both
    // give the high-risk pass beside the one measured, in the same shape.
    let (e, c) = (
        get(&stack, EMBEDDED_API, "/api/v1/plan").body,
        get(&stack, CONTROL_API, "/api/v1/plan").body,
    );
    let zones = |v: &Value| -> Vec<(String, u64, u64)> {
        v["zones"]
            .as_array()
            .unwrap_or_else(|| panic!("no zones: {v}"))
            .iter()
            .map(|z| {
                (
                    z["zone"].as_str().unwrap_or_default().to_string(),
                    z["assets"].as_u64().unwrap_or(0),
                    z["nodes"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(zones(&e), vec![("default".to_string(), 32, 1)], "{e}");
    assert_eq!(
        zones(&c),
        vec![("a".to_string(), 16, 1), ("b".to_string(), 16, 1)],
        "{c}"
    );
    let high = |v: &Value, zone: usize| -> Value {
        v["zones"][zone]["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["task"] == "high_risk_ports").cloned())
            .unwrap_or_else(|| panic!("no high_risk_ports in the plan: {v}"))
    };
    for (name, plan, zone) in [("embedded", &e, 0), ("scale-out", &c, 0), ("scale-out", &c, 1)] {
        let t = high(plan, zone);
        // 16 or 32 hosts × 7 ports at 100,000 probes/s.
        let hosts = t["targets"].as_f64().expect("targets");
        assert_eq!(t["ports_per_target"], 7, "{name}: {t}");
        let expected = t["expected_pass_secs"].as_f64().expect("expected");
        assert!((expected - hosts * 7.0 / 100_000.0).abs() < 1e-9, "{name}: {t}");
        assert!(
            t["measured_pass_secs"].as_f64().is_some(),
            "{name}: a pass ran: {t}"
        );
        assert_eq!(t["meets_cadence"], true, "{name}: {t}");
    }
    assert!(shapes_agree(&high(&e, 0), &high(&c, 0)));
    assert_eq!(
        get(&stack, CONTROL_API, "/api/v1/plan?nodes=0").status,
        400,
        "a what-if of no node is refused"
    );

    // --- stop every producer; serve both again from what they recorded ------------
    for p in &mut producers {
        assert_eq!(p.stop(), Some(0), "clean stop");
    }
    let frozen = stack.path("frozen.toml");
    std::fs::write(&frozen, config("high_risk_ports = \"off\"")).unwrap();
    let frozen = frozen.to_str().unwrap();
    // The projector folds what is left in the topic, then stops.
    let events = stack.kafka_events().len();
    let converged = wait_for(Duration::from_secs(30), || {
        let snapshot = stack.clickhouse_snapshot()?;
        let hosts = snapshot["hosts"].as_array()?;
        let scans: u64 = hosts.iter().filter_map(|h| h["scans"].as_u64()).sum();
        let host_scans = stack
            .kafka_events()
            .iter()
            .filter(|e| matches!(e.observation, portwatch_events::Observation::HostScan(_)))
            .count() as u64;
        (scans == host_scans).then_some(())
    });
    assert!(
        converged.is_some(),
        "projector never caught up with {events} events"
    );
    assert_eq!(projector.stop(), Some(0));
    let serve = |args: &[&str], log: &str| -> Proc {
        let mut full = vec!["--config", frozen];
        full.extend_from_slice(args);
        Proc(stack.ns.spawn_portwatch(&full, &stack.path(log)))
    };
    let _up = serve(&["--data", data, "up", "--listen", EMBEDDED_API], "up-frozen.log");
    // The control plane's files (the ledger key, the first admin token): the
    // stack's, in the test's directory.
    let control_data = stack.path("data");
    let _control = serve(
        &["--data", control_data.to_str().expect("utf8"), "control"],
        "control-frozen.log",
    );
    for api in [EMBEDDED_API, CONTROL_API] {
        assert!(
            wait_for(Duration::from_secs(30), || stack.ns.get_json(api, "/healthz")).is_some(),
            "{api} not serving again"
        );
    }

    // --- the same requests, the same answers --------------------------------------
    let data_paths = [
        "/api/v1/ports",
        "/api/v1/ports?state=all",
        "/api/v1/ports?state=closed",
        "/api/v1/ports?ip=127.0.1.2",
        "/api/v1/ports?owner=db-team",
        "/api/v1/ports?owner=web-team&state=all",
        "/api/v1/ports?owner=nobody",
        "/api/v1/ports?risk=high_risk_port",
        "/api/v1/ports?risk=risk_port",
        "/api/v1/hosts",
        "/api/v1/hosts?owner=web-team",
        "/api/v1/hosts?ip=127.0.2.5",
        "/api/v1/episodes",
        "/api/v1/episodes?open=true",
        "/api/v1/episodes?open=false",
        "/api/v1/episodes?ip=127.0.2.5",
        "/api/v1/alerts",
        "/api/v1/alerts?risk=high_risk_port",
        "/api/v1/alerts?owner=db-team",
        "/api/v1/alerts?ip=127.0.2.5",
    ];
    let mut rows_compared = 0;
    for path in data_paths {
        let (e, c) = (get(&stack, EMBEDDED_API, path), get(&stack, CONTROL_API, path));
        assert_eq!(
            (e.status, c.status),
            (200, 200),
            "{path}: {} / {}",
            e.body,
            c.body
        );
        let (mut ev, mut cv): (Vec<Value>, Vec<Value>) = (
            e.body.as_array().unwrap().iter().map(untimed).collect(),
            c.body.as_array().unwrap().iter().map(untimed).collect(),
        );
        // Shapes: the same keys on every row (both sides' rows have one shape each).
        let shapes = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| shape(r).to_string())
                .collect()
        };
        assert_eq!(shapes(&e.body), shapes(&c.body), "{path}: shapes differ");
        if path.starts_with("/api/v1/alerts") {
            // Alerts are ordered by time, which differs: compare as sets.
            ev.sort_by_key(|v| v.to_string());
            cv.sort_by_key(|v| v.to_string());
        }
        assert_eq!(ev, cv, "{path}: embedded (left) and scale-out (right) differ");
        rows_compared += ev.len();
    }
    eprintln!("{rows_compared} rows compared over {} requests", data_paths.len());

    // Values the fleet implies, so that two equal but empty answers cannot pass.
    let ports = get(&stack, EMBEDDED_API, "/api/v1/ports?state=all").body;
    assert_eq!(ports.as_array().unwrap().len(), FLEET.len());
    let db = get(&stack, CONTROL_API, "/api/v1/ports?owner=db-team").body;
    let db: BTreeSet<u64> = db
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(db, BTreeSet::from([22, 6379]));
    let web = get(&stack, CONTROL_API, "/api/v1/hosts?owner=web-team").body;
    let web: BTreeSet<&str> = web
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["ip"].as_str().unwrap())
        .collect();
    // Every address of the /28 was scanned, so every one is a host; .9 is the
    // more specific asset of nobody in particular, so not web-team's.
    assert_eq!(web.len(), 15, "{web:?}");
    assert!(!web.contains("127.0.2.9") && web.contains("127.0.2.5"), "{web:?}");
    let alerts = get(&stack, CONTROL_API, "/api/v1/alerts").body;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(
        alerts.len(),
        FLEET.len() + 1,
        "one per opening, one for the closing"
    );
    assert!(alerts.iter().all(|a| a["severity"] == "high"));
    assert_eq!(
        get(&stack, CONTROL_API, "/api/v1/ports?risk=risk_port").body,
        Value::Array(vec![])
    );

    // Paging: the same rows, page by page, in both.
    let (e_rows, e_pages) = walk(&stack, EMBEDDED_API, "/api/v1/ports?state=all", 3);
    let (c_rows, c_pages) = walk(&stack, CONTROL_API, "/api/v1/ports?state=all", 3);
    assert_eq!(e_pages, 3, "8 rows, 3 per page");
    assert_eq!(e_pages, c_pages);
    assert_eq!(
        e_rows.iter().map(untimed).collect::<Vec<_>>(),
        c_rows.iter().map(untimed).collect::<Vec<_>>()
    );
    assert_eq!(
        e_rows,
        get(&stack, EMBEDDED_API, "/api/v1/ports?state=all")
            .body
            .as_array()
            .unwrap()
            .clone()
    );
    for path in ["/api/v1/episodes", "/api/v1/hosts", "/api/v1/alerts"] {
        let (e_rows, _) = walk(&stack, EMBEDDED_API, path, 2);
        let (c_rows, _) = walk(&stack, CONTROL_API, path, 2);
        assert_eq!(e_rows.len(), c_rows.len(), "{path} paged");
        assert_eq!(
            e_rows,
            get(&stack, EMBEDDED_API, path).body.as_array().unwrap().clone(),
            "{path}"
        );
    }

    // The raw history of one port, from the embedded log and from ClickHouse's
    // observations: each deployment recorded its own scans, so the events differ,
    // but not their shape or what they say; and walking the pages gives the answer.
    let history = "/api/v1/events?ip=127.0.1.2&port=6379";
    let mut shapes = Vec::new();
    for api in [EMBEDDED_API, CONTROL_API] {
        let all = get(&stack, api, &format!("{history}&limit=1000")).body;
        let all = all.as_array().unwrap().clone();
        let scan = all
            .iter()
            .find(|e| e["kind"] == "host_scan" && e["port_open"] == true)
            .unwrap_or_else(|| panic!("{api}: no scan saw 127.0.1.2:6379 open: {all:?}"));
        assert!(scan["summary"].as_str().unwrap().contains("6379"), "{scan}");
        assert!(all.iter().all(|e| e["event"]["ip"] == "127.0.1.2"), "{api}");
        shapes.push(shape(scan));
        let (paged, pages) = walk(&stack, api, history, 4);
        assert!(pages > 1, "{api}: {} events in one page of 4", paged.len());
        assert_eq!(paged, all, "{api}: the pages are the whole history");
    }
    assert_eq!(
        shapes[0], shapes[1],
        "an event's shape differs between the deployments"
    );

    // Task health: every task in both, in the same order; the one that ran has a
    // zone entry of the same shape in both (the embedded process is zone default).
    let (e, c) = (
        get(&stack, EMBEDDED_API, "/api/v1/tasks").body,
        get(&stack, CONTROL_API, "/api/v1/tasks").body,
    );
    let names =
        |v: &Value| -> Vec<Value> { v.as_array().unwrap().iter().map(|t| t["task"].clone()).collect() };
    assert_eq!(names(&e), names(&c));
    let ran = |v: &Value| -> Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == "high_risk_ports")
            .and_then(|t| t["zones"].as_array()?.first().cloned())
            .unwrap_or_else(|| panic!("high_risk_ports never ran: {v}"))
    };
    let (ez, cz) = (ran(&e), ran(&c));
    assert!(shapes_agree(&ez, &cz), "{ez} / {cz}");
    assert!(ez["runs"].as_u64() > Some(0) && cz["runs"].as_u64() > Some(0));

    // The same schedule, the same shapes of jobs, nodes and health.
    let (e, c) = (
        get(&stack, EMBEDDED_API, "/api/v1/schedule"),
        get(&stack, CONTROL_API, "/api/v1/schedule"),
    );
    assert_eq!(e.body, c.body);
    let (e, c) = (
        get(&stack, EMBEDDED_API, "/healthz"),
        get(&stack, CONTROL_API, "/healthz"),
    );
    assert_eq!((e.status, c.status), (200, 200));
    // `projection_lag` is a number where the deployment can tell, else null.
    assert_eq!(
        (&e.body["status"], &c.body["status"]),
        (&Value::from("ok"), &Value::from("ok"))
    );
    assert_eq!(e.body["projection_lag"], 0);
    // Jobs outlive a restart in both: the embedded board wrote them to state.db.
    let (e, c) = (
        get(&stack, EMBEDDED_API, "/api/v1/jobs?limit=5").body,
        get(&stack, CONTROL_API, "/api/v1/jobs?limit=5").body,
    );
    let (e, c) = (e.as_array().unwrap(), c.as_array().unwrap());
    assert!(
        !e.is_empty() && !c.is_empty(),
        "jobs after the restart: {e:?} / {c:?}"
    );
    assert!(shapes_agree(&e[0], &c[0]), "{e:?} / {c:?}");
    assert!(e.iter().all(|j| j["task"] == "high_risk_ports"), "{e:?}");
    // (A job cut short by the stop is listed as failed, "interrupted".)
    assert!(e.iter().any(|j| j["state"] == "done"), "{e:?}");
    // The jobs the scale-out deployment ran are listed with their zones.
    let jobs = get(&stack, CONTROL_API, "/api/v1/jobs?limit=200").body;
    let zones: BTreeSet<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["zone"].as_str())
        .collect();
    assert_eq!(zones, BTreeSet::from(["a", "b"]));

    // The same errors, word for word.
    for path in [
        "/api/v1/ports?state=bogus",
        "/api/v1/ports?ip=nope",
        "/api/v1/ports?risk=medium",
        "/api/v1/ports?limit=0",
        "/api/v1/ports?limit=20000",
        "/api/v1/ports?bogus=1",
        "/api/v1/episodes?open=maybe",
        "/api/v1/alerts?owner=",
        "/api/v1/hosts?cursor=%01",
        "/api/v1/events",
        "/api/v1/events?ip=127.0.1.2&port=0",
        "/api/v1/events?ip=127.0.1.2&kind=scan",
        "/api/v1/events?ip=127.0.1.2&cursor=abc",
        "/api/v1/tasks?hours=0",
    ] {
        let (e, c) = (get(&stack, EMBEDDED_API, path), get(&stack, CONTROL_API, path));
        assert_eq!(e.status, 400, "{path}: {}", e.body);
        assert_eq!((e.status, &e.body), (c.status, &c.body), "{path}");
        assert!(e.body["error"].as_str().is_some_and(|m| !m.is_empty()), "{path}");
    }
    assert_eq!(
        get(&stack, EMBEDDED_API, "/api/v1/openapi.json").body,
        get(&stack, CONTROL_API, "/api/v1/openapi.json").body
    );
}
