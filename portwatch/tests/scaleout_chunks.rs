//! A zone's probe nodes share its work (issue 20), on tansu + ClickHouse with a
//! loopback /24 in the test's namespace: a pass is cut into chunks the leader
//! leases to idle nodes; three nodes finish a pass in clearly less time than one;
//! a node SIGKILLed mid-chunk loses its chunk to another node once its lease runs
//! out, and nothing is lost or folded twice; a cadence shorter than the pass is
//! reported as overrun and nothing piles up. And a zone of 131,072 addresses,
//! half of them dead, gets its high-risk passes (its orders stay small).

#![allow(clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::scaleout::{stack_config, Stack, API};
use support::wait_for;

/// One zone, `a`, of 256 addresses; 600 ports each at 10,000 probes a second:
/// 153,600 probes, a pass of ~15 s on one node, in chunks of ~2 s (8 chunks).
fn config() -> String {
    stack_config("high_risk_ports = \"1s\"\nchunk_target = \"2s\"", "")
        .replace("rate = 100000", "rate = 10000")
        .replace(
            "high_risk_ports = \"22,80,3306,5432,6379,8080,9200,27017\"",
            "high_risk_ports = \"1-600\"",
        )
        .replace("\n[[assets]]\ncidr = \"127.0.2.0/24\"\nzone = \"b\"\n", "\n")
}

/// The tests of this file time passes and detections: they run one at a time
/// (each starts a stack of its own, and three at once would share two cores).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn jobs(stack: &Stack) -> Vec<Value> {
    stack
        .ns
        .get_json(API, "/api/v1/jobs?limit=10000")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn at(v: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    v[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {field}: {v}"))
}

/// The passes listed (not chunk attempts), oldest first.
fn passes(jobs: &[Value]) -> Vec<Value> {
    let mut p: Vec<Value> = jobs.iter().filter(|j| j["pass"].is_null()).cloned().collect();
    p.sort_by_key(|j| at(j, "started_at"));
    p
}

fn attempts<'a>(jobs: &'a [Value], pass: &Value) -> Vec<&'a Value> {
    jobs.iter().filter(|j| j["pass"] == pass["id"]).collect()
}

/// Seconds a finished pass took (ClickHouse keeps seconds).
fn took(pass: &Value) -> i64 {
    (at(pass, "updated_at") - at(pass, "started_at")).num_seconds()
}

/// The first pass done that started after `after`, with its attempts.
fn done_after(stack: &Stack, after: chrono::DateTime<chrono::Utc>, limit: Duration) -> (Value, Vec<Value>) {
    wait_for(limit, || {
        let all = jobs(stack);
        let pass = passes(&all)
            .into_iter()
            .find(|p| p["state"] == "done" && at(p, "started_at") > after)?;
        let tried: Vec<Value> = attempts(&all, &pass).into_iter().cloned().collect();
        Some((pass, tried))
    })
    .unwrap_or_else(|| panic!("no pass done after {after}: {:#?}", passes(&jobs(stack))))
}

fn nodes_ok(stack: &Stack) -> BTreeSet<String> {
    stack
        .ns
        .get_json(API, "/api/v1/nodes")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|n| n["health"] == "ok")
        .filter_map(|n| n["node"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn three_nodes_share_a_pass_and_a_killed_nodes_chunk_is_leased_again() {
    let _alone = alone();
    let stack = Stack::start("so-chunks", &config());
    let _fleet: Vec<_> = ["127.0.1.7:22", "127.0.1.40:443", "127.0.1.200:80"]
        .iter()
        .map(|a| stack.ns.serve(a))
        .collect();
    let mut control = stack.spawn(&["control"], "control.log");
    let mut projector = stack.spawn(&["project"], "project.log");
    let mut a1 = stack.spawn_probe_named("a", "a1");
    let one = wait_for(Duration::from_secs(60), || {
        nodes_ok(&stack).contains("a1").then(chrono::Utc::now)
    })
    .unwrap_or_else(|| panic!("a1 never heard from; control:\n{}", stack.log("control.log")));

    // --- one node --------------------------------------------------------------------
    let (alone, tried) = done_after(&stack, one, Duration::from_secs(120));
    let chunks = alone["chunks"].as_u64().expect("chunks");
    assert!(chunks >= 6, "cut into chunks of ~2 s: {alone}");
    assert_eq!(alone["targets"], 256, "{alone}");
    assert_eq!(alone["hosts_done"], 256, "{alone}");
    assert!(
        tried.iter().all(|a| a["node"] == "a1" && a["state"] == "done"),
        "{tried:#?}"
    );
    let with_one = took(&alone);
    eprintln!("one node: a pass of {chunks} chunks in {with_one} s");

    // --- three nodes -----------------------------------------------------------------
    let mut a2 = stack.spawn_probe_named("a", "a2");
    let mut a3 = stack.spawn_probe_named("a", "a3");
    let three = wait_for(Duration::from_secs(60), || {
        (nodes_ok(&stack).len() == 3).then(chrono::Utc::now)
    })
    .expect("three nodes heard from");
    let (shared, tried) = done_after(&stack, three, Duration::from_secs(120));
    let ran: BTreeSet<&str> = tried.iter().filter_map(|a| a["node"].as_str()).collect();
    assert_eq!(
        ran,
        BTreeSet::from(["a1", "a2", "a3"]),
        "every node ran chunks of the pass: {tried:#?}"
    );
    assert_eq!(shared["hosts_done"], 256, "{shared}");
    let with_three = took(&shared);
    eprintln!(
        "three nodes: a pass of {} chunks in {with_three} s (one node: {with_one} s)",
        shared["chunks"]
    );
    assert!(
        (with_three as f64) < 0.7 * with_one as f64,
        "three nodes took {with_three} s, one {with_one} s"
    );

    // --- a node dies mid-chunk -------------------------------------------------------
    let since = chrono::Utc::now();
    let (victim, pass) = wait_for(Duration::from_secs(60), || {
        let all = jobs(&stack);
        let pass = passes(&all)
            .into_iter()
            .find(|p| p["state"] == "running" && at(p, "started_at") > since)?;
        let held = attempts(&all, &pass)
            .into_iter()
            .find(|a| a["node"] == "a2" && a["state"] == "leased")?
            .clone();
        Some((held, pass))
    })
    .expect("a2 holding a chunk of a pass");
    a2.kill();
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    eprintln!(
        "killed a2 holding chunk {} of pass {}",
        victim["chunk"], pass["id"]
    );
    let (redone, tried) = wait_for(Duration::from_secs(60), || {
        let all = jobs(&stack);
        let pass = all
            .iter()
            .find(|j| j["id"] == pass["id"] && j["state"] == "done")?
            .clone();
        let tried: Vec<Value> = attempts(&all, &pass).into_iter().cloned().collect();
        let again = tried
            .iter()
            .find(|a| a["chunk"] == victim["chunk"] && a["state"] == "done")?
            .clone();
        Some((again, tried))
    })
    .unwrap_or_else(|| panic!("the pass never finished; control:\n{}", stack.log("control.log")));
    let lost = tried
        .iter()
        .find(|a| a["id"] == victim["id"])
        .expect("the killed attempt is listed");
    assert_eq!(lost["state"], "lapsed", "{lost}");
    assert!(
        lost["error"].as_str().unwrap_or_default().contains("a2"),
        "{lost}"
    );
    assert_ne!(redone["node"], "a2");
    assert!(redone["try_no"].as_u64() >= Some(2), "{redone}");
    // Leased again within the lease of the dead node (three heartbeats of 1 s) after
    // the kill, give or take ClickHouse's whole seconds and a tick.
    let lapse = at(&redone, "started_at") - killed_at;
    eprintln!(
        "the chunk was leased again {} s after the kill (whole seconds), done {:?} after it",
        lapse.num_seconds(),
        killed.elapsed()
    );
    assert!(killed.elapsed() < Duration::from_secs(30));
    assert!(lapse <= chrono::Duration::seconds(3 + 3), "{lapse}: {tried:#?}");
    // A stale node runs nothing.
    let stale = wait_for(Duration::from_secs(15), || {
        let nodes = stack.ns.get_json(API, "/api/v1/nodes")?;
        nodes
            .as_array()?
            .iter()
            .find(|n| n["node"] == "a2" && n["health"] == "stale")
            .cloned()
    })
    .expect("a2 stale");
    assert!(stale["running_job"].is_null(), "{stale}");

    // --- no pile-up: one pass at a time, each chunk issued once per try ---------------
    let all = jobs(&stack);
    let listed = passes(&all);
    for w in listed.windows(2) {
        assert!(
            at(&w[1], "started_at") >= at(&w[0], "updated_at") || w[0]["state"] == "running",
            "passes overlap: {} / {}",
            w[0],
            w[1]
        );
    }
    assert!(listed.iter().filter(|p| p["state"] == "running").count() <= 1);
    for p in listed.iter().filter(|p| p["state"] == "done") {
        // Each chunk was issued once per try (tries 1, 2, ... with no gap or
        // repeat), and finished.
        let tried = attempts(&all, p);
        for chunk in 0..p["chunks"].as_u64().expect("chunks") {
            let of = support::sweep::tries_of(p, &tried, chunk);
            assert!(
                of.iter().any(|a| a["state"] == "done"),
                "{p}: chunk {chunk}: {of:#?}"
            );
        }
    }
    let zone = support::sweep::task_zone(&stack.ns, API, "high_risk_ports");
    assert!(
        zone["overruns"].as_u64() > Some(0),
        "a 1 s cadence, passes of seconds: {zone}"
    );

    // --- nothing lost, nothing twice -------------------------------------------------
    for p in [&mut control, &mut a1, &mut a3] {
        assert_eq!(p.stop(), Some(0));
    }
    let (clickhouse, embedded, events) = stack.converged(Duration::from_secs(60));
    assert_eq!(
        clickhouse,
        embedded,
        "ClickHouse state differs from the embedded fold:\n{}",
        support::scaleout::snapshot_diff(&clickhouse, &embedded)
    );
    stack.assert_no_loss_no_duplicates(&events);
    assert_eq!(projector.stop(), Some(0));
    let _ = a2.stop();
}

/// A zone of a /15 whose every other address is dead: the high-risk pass covers
/// the 65,536 live ones in chunks of at most 4,096 networks (the order of one job of
/// 65,536 separate /32s was 1.19 MB, over the broker's limit, and never ran).
#[test]
fn a_half_dead_slash_15_gets_its_high_risk_passes() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let _alone = alone();
    let config = stack_config("high_risk_ports = \"5s\"", "")
        .replace("cidr = \"127.0.1.0/24\"", "cidr = \"127.2.0.0/15\"")
        .replace("\n[[assets]]\ncidr = \"127.0.2.0/24\"\nzone = \"b\"\n", "\n")
        .replace(
            "allow_reserved = true",
            "allow_reserved = true\nmax_targets = 131072",
        );
    let stack = Stack::start("so-halfdead", &config);
    let migrate = stack.portwatch(&["migrate", "--topics"]);
    assert!(migrate.status.success(), "{}", support::stderr(&migrate));
    let mut projector = stack.spawn(&["project"], "project.log");
    // Every other address answered no liveness check.
    let dead: Vec<(String, String)> = (0..131_072u32)
        .step_by(2)
        .map(|i| {
            let ip = std::net::IpAddr::from((0x7F02_0000 + i).to_be_bytes());
            let e = support::liveness_event("tester", ip, false);
            (e.key(), e.to_json())
        })
        .collect();
    stack.ns.within(move || {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9092")
            .set("queue.buffering.max.messages", "200000")
            .create()
            .expect("producer");
        for (key, body) in &dead {
            producer
                .send(BaseRecord::to("portwatch.observations").key(key).payload(body))
                .map_err(|(e, _)| e)
                .expect("queued");
        }
        producer.flush(Duration::from_secs(30)).expect("delivered");
    });
    let folded = wait_for(Duration::from_secs(120), || {
        (stack.sql_u64("SELECT count() FROM hosts FINAL WHERE alive = 0") == 65_536).then_some(())
    });
    assert!(folded.is_some(), "the dead hosts were not folded");

    let mut control = stack.spawn(&["control"], "control.log");
    let mut probe = stack.spawn_probe("a");
    let (pass, tried) = wait_for(Duration::from_secs(300), || {
        let all = jobs(&stack);
        let pass = passes(&all)
            .into_iter()
            .find(|p| p["state"] == "done" && p["targets"] == 65_536)?;
        let tried: Vec<Value> = attempts(&all, &pass).into_iter().cloned().collect();
        Some((pass, tried))
    })
    .unwrap_or_else(|| {
        panic!(
            "no high-risk pass over the live half; passes: {:#?}\ncontrol:\n{}",
            passes(&jobs(&stack)),
            stack.log("control.log")
        )
    });
    assert_eq!(pass["hosts_done"], 65_536, "{pass}");
    assert!(
        tried.len() >= 16,
        "scattered addresses: chunks of at most 4,096 networks: {}",
        tried.len()
    );
    // Every chunk done (a lease that ran out on a busy machine is tried again);
    // none refused or failed.
    for chunk in 0..pass["chunks"].as_u64().expect("chunks") {
        assert!(
            tried.iter().any(|a| a["chunk"] == chunk && a["state"] == "done"),
            "chunk {chunk}: {tried:#?}"
        );
    }
    assert!(!tried.iter().any(|a| a["state"] == "failed"), "{tried:#?}");
    assert!(
        tried.iter().all(|a| a["targets"].as_u64() <= Some(4096)),
        "{tried:#?}"
    );
    // Every order was taken by the broker.
    assert!(
        !stack.log("control.log").contains("cannot issue chunk"),
        "{}",
        stack.log("control.log")
    );
    for p in [&mut control, &mut probe, &mut projector] {
        assert_eq!(p.stop(), Some(0));
    }
}

/// The scale-out twin of e2e_chunks: one node, a full-port sweep of zone a with a
/// cadence shorter than its pass, and a high-risk port opened meanwhile.
#[test]
fn a_high_risk_port_is_found_between_two_chunks_of_a_sweep() {
    let _alone = alone();
    let config = stack_config("high_risk_ports = \"3s\"\nchunk_target = \"2s\"", "")
        .replace("full_ports = \"off\"", "full_ports = \"2s\"")
        .replace("rate = 100000", "rate = 20000")
        .replace(
            "high_risk_ports = \"22,80,3306,5432,6379,8080,9200,27017\"",
            "high_risk_ports = \"22,6379\"",
        )
        .replace("cidr = \"127.0.1.0/24\"", "cidr = \"127.0.1.0/28\"")
        .replace("\n[[assets]]\ncidr = \"127.0.2.0/24\"\nzone = \"b\"\n", "\n");
    let stack = Stack::start("so-sweep", &config);
    let mut control = stack.spawn(&["control"], "control.log");
    let mut projector = stack.spawn(&["project"], "project.log");
    let mut probe = stack.spawn_probe("a");
    let (took, _redis) = support::sweep::found_while_sweeping(
        &stack.ns,
        API,
        ("127.0.1.9", 6379),
        Duration::from_secs(3),
        Duration::from_secs(2),
    );
    eprintln!("scale-out: a high-risk port opened during a sweep found after {took:?}");
    std::thread::sleep(Duration::from_secs(3));
    support::sweep::overran_without_pile_up(&stack.ns, API);
    for p in [&mut control, &mut probe, &mut projector] {
        assert_eq!(p.stop(), Some(0));
    }
}
