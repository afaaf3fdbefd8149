//! Faults of the scale-out deployment, each on a real broker (tansu) and a real
//! ClickHouse server in a namespace of the test's own. Each asserts no loss (every
//! event in the topic is in ClickHouse, and the state equals the embedded fold of
//! the topic's events) and no duplicates (rows and alerts, with FINAL and after a
//! full merge).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::scaleout::{expected_alerts, snapshot_diff, stack_config, Stack};
use support::{wait_for, Proc};

/// Zone-a and zone-b listeners (accepting, like real services).
const FLEET: [&str; 4] = [
    "127.0.1.3:3306",
    "127.0.1.7:8080",
    "127.0.2.2:6379",
    "127.0.2.9:5432",
];

fn start_fleet(stack: &Stack) -> Vec<support::Server> {
    FLEET.iter().map(|a| stack.ns.serve(a)).collect()
}

fn probes(stack: &Stack) -> Vec<Proc> {
    ["a", "b"].iter().map(|z| stack.spawn_probe(z)).collect()
}

fn observations(stack: &Stack) -> u64 {
    // FINAL: a replay writes rows again that a merge later collapses, so the raw
    // count may fall; the events stored never do.
    stack
        .sql("SELECT count() FROM observations FINAL")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Stop the event sources, wait for the projectors, and check everything.
fn finish(stack: &Stack, sources: &mut [Proc]) {
    for p in sources.iter_mut() {
        p.stop();
    }
    let (ch, embedded, events) = stack.converged(Duration::from_secs(90));
    assert!(
        ch == embedded,
        "ClickHouse state (left) differs from the embedded fold (right):\n{}",
        snapshot_diff(&ch, &embedded)
    );
    assert!(
        !ch["episodes"].as_array().unwrap().is_empty(),
        "episodes were recorded"
    );
    stack.assert_no_loss_no_duplicates(&events);
    assert_eq!(
        stack.sql_u64("SELECT count() FROM alerts FINAL"),
        expected_alerts(&ch)
    );
}

/// Per partition: (max row offset + 1) in ClickHouse vs the checkpoint's next offset.
fn rows_ahead_of_checkpoint(stack: &Stack) -> Vec<(u64, u64, u64)> {
    let rows = stack
        .sql("SELECT kpartition, max(koffset) + 1 FROM observations GROUP BY kpartition FORMAT TSV")
        .unwrap();
    let cps = stack
        .sql("SELECT kpartition, max(next_offset) FROM projector_offsets GROUP BY kpartition FORMAT TSV")
        .unwrap();
    let parse = |text: &str| -> BTreeMap<u64, u64> {
        text.lines()
            .filter_map(|l| {
                let mut it = l.split('\t');
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
            })
            .collect()
    };
    let (rows, cps) = (parse(&rows), parse(&cps));
    rows.iter()
        .map(|(p, end)| (*p, *end, cps.get(p).copied().unwrap_or(0)))
        .filter(|(_, end, cp)| end > cp)
        .collect()
}

#[test]
fn projector_killed_mid_batch_loses_and_doubles_nothing() {
    let stack = Stack::start("so-kill", &stack_config("high_risk_ports = \"1s\"", ""));
    let _fleet = start_fleet(&stack);
    let mut sources = vec![stack.spawn(&["control"], "control.log")];
    sources.extend(probes(&stack));
    let mut steady = stack.spawn(&["project"], "project-steady.log");

    // 1. Crash exactly between a batch's rows and its checkpoint.
    let mut victim = stack.spawn_env(
        &["project"],
        "project-failpoint.log",
        &[("PORTWATCH_FAILPOINT", "projector_after_write:3")],
    );
    let exited = wait_for(Duration::from_secs(60), || victim.0.try_wait().ok().flatten());
    assert!(
        exited.is_some(),
        "failpoint never hit:\n{}",
        stack.log("project-failpoint.log")
    );
    assert!(stack.log("project-failpoint.log").contains("failpoint reached"));
    // The crash left rows written past the last checkpoint of some partition: the
    // case a replay must absorb without doubling anything.
    let ahead = rows_ahead_of_checkpoint(&stack);
    eprintln!("partitions with rows ahead of their checkpoint after the crash: {ahead:?}");

    // 1b. Crash inside a checkpoint: host images written, the offset not. The next
    //     owner replays from the offset and must not fold those hosts' events twice.
    let mut victim = stack.spawn_env(
        &["project"],
        "project-images.log",
        &[("PORTWATCH_FAILPOINT", "checkpoint_after_images:2")],
    );
    let exited = wait_for(Duration::from_secs(60), || victim.0.try_wait().ok().flatten());
    assert!(
        exited.is_some(),
        "failpoint never hit:\n{}",
        stack.log("project-images.log")
    );
    let images_ahead = stack.sql_u64(
        "SELECT count() FROM (SELECT kpartition, ver FROM projector_state FINAL) ANY INNER JOIN \
         (SELECT kpartition, max(next_offset) AS committed FROM projector_offsets GROUP BY kpartition) \
         USING kpartition WHERE ver > committed",
    );
    // (Another projector may already have folded past them by the time this looks.)
    eprintln!("host images ahead of their partition's committed offset after the crash: {images_ahead}");

    // 2. SIGKILL at arbitrary moments while events flow; the other projector takes
    //    the partitions over, then the restarted one takes some back.
    let mut kills = 0;
    for round in 0..3 {
        let before = observations(&stack);
        let mut p = stack.spawn(&["project"], &format!("project-round{round}.log"));
        std::thread::sleep(Duration::from_millis(2500 + 700 * round));
        p.kill();
        kills += 1;
        assert!(observations(&stack) >= before, "rows never shrink");
    }
    assert_eq!(kills, 3);
    let mut last = stack.spawn(&["project"], "project-last.log");
    std::thread::sleep(Duration::from_secs(3));
    finish(&stack, &mut sources);
    assert!(
        !ahead.is_empty(),
        "the failpoint crash should have left rows past a checkpoint (the case under test)"
    );
    assert!(
        stack
            .log("project-images.log")
            .contains("aborting between host images and offset"),
        "the checkpoint crash should have left host images past the committed offset (the case under test)"
    );
    assert_eq!(steady.stop(), Some(0));
    assert_eq!(last.stop(), Some(0));
}

#[test]
fn clickhouse_down_30s_projector_backs_off_and_resumes() {
    let mut stack = Stack::start("so-chdown", &stack_config("high_risk_ports = \"1s\"", ""));
    let _fleet = start_fleet(&stack);
    let mut sources = vec![stack.spawn(&["control"], "control.log")];
    sources.extend(probes(&stack));
    let mut projector = stack.spawn(&["project"], "project.log");
    assert!(
        wait_for(Duration::from_secs(60), || (observations(&stack) > 500)
            .then_some(()))
        .is_some(),
        "events never reached ClickHouse:\n{}",
        stack.log("project.log")
    );

    stack.stop_clickhouse();
    let down_at = chrono::Utc::now();
    std::thread::sleep(Duration::from_secs(30));
    let up_at = chrono::Utc::now();
    assert!(
        projector.0.try_wait().unwrap().is_none(),
        "projector died while ClickHouse was down"
    );
    let log = stack.log("project.log");
    // Whatever it was doing when ClickHouse went away (a batch write or a checkpoint),
    // it backs off and retries.
    assert!(
        log.lines()
            .any(|l| l.contains("what=\"clickhouse") && l.contains("retrying")),
        "no backoff logged:\n{log}"
    );
    stack.start_clickhouse();

    // Events observed during the outage reach ClickHouse once it is back.
    let outage_events = wait_for(Duration::from_secs(60), || {
        let n = stack.sql_u64(&format!(
            "SELECT count() FROM observations FINAL WHERE ts_ms BETWEEN {} AND {}",
            down_at.timestamp_millis(),
            up_at.timestamp_millis()
        ));
        (n > 0).then_some(n)
    });
    assert!(
        outage_events.is_some(),
        "nothing observed during the outage was projected"
    );
    std::thread::sleep(Duration::from_secs(2));
    finish(&stack, &mut sources);
    let log = stack.log("project.log");
    assert!(
        log.contains("recovered"),
        "projector never logged its recovery:\n{log}"
    );
    assert_eq!(projector.stop(), Some(0));
}

#[test]
fn broker_down_probe_spools_then_delivers_in_order() {
    // One slow job per zone (connect scans paced at 400 probes/s over a /24), so the
    // probe is mid-scan when the broker goes away.
    let stack = Stack::start(
        "so-brk",
        &stack_config("high_risk_ports = \"1h\"", "").replace(
            "rate = 100000\ntimeout = \"300ms\"",
            "mode = \"connect\"\nrate = 400\ntimeout = \"300ms\"",
        ),
    );
    let _fleet = start_fleet(&stack);
    let mut projector = stack.spawn(&["project"], "project.log");
    let mut sources = vec![stack.spawn(&["control"], "control.log")];
    sources.extend(probes(&stack));
    assert!(
        wait_for(Duration::from_secs(60), || stack
            .log("probe-a.log")
            .contains("job started")
            .then_some(()))
        .is_some(),
        "probe a never started its job:\n{}",
        stack.log("probe-a.log")
    );
    std::thread::sleep(Duration::from_millis(500));
    stack.freeze_broker(true);
    let frozen = Instant::now();
    // The scans finish during the outage and their events wait in the spools: a
    // produce gives up after the 5 s timeout, so this takes 6 s at the least and
    // longer on a loaded machine (bounded).
    let spooled = |log: &str| -> u64 {
        log.lines()
            .filter(|l| l.contains("events stay in the spool"))
            .filter_map(|l| {
                l.split("spooled=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    let both = wait_for(Duration::from_secs(45), || {
        let log = stack.log("probe-a.log");
        (frozen.elapsed() >= Duration::from_secs(12) && log.contains("job finished") && spooled(&log) > 0)
            .then_some(())
    });
    stack.freeze_broker(false);
    let outage = frozen.elapsed();
    assert!(
        both.is_some(),
        "probe a did not finish its job into the spool during {outage:?} of outage"
    );
    let log_a = stack.log("probe-a.log");
    assert!(
        log_a.contains("job finished"),
        "job did not finish during the outage:\n{log_a}"
    );
    assert!(spooled(&log_a) > 0, "probe a never spooled:\n{log_a}");
    assert!(
        wait_for(Duration::from_secs(60), || stack
            .log("probe-a.log")
            .contains("spool draining")
            .then_some(()))
        .is_some(),
        "spool never drained:\n{}",
        stack.log("probe-a.log")
    );
    eprintln!(
        "broker frozen for {outage:?}; probe a spooled up to {} events",
        spooled(&log_a)
    );

    // Delivered in order: in each partition, the first copy of each of the node's
    // events comes in the order the node recorded them (UUIDv7 ids grow).
    let events = stack.kafka_events();
    let mut seen = BTreeSet::new();
    let mut last_by_key: BTreeMap<String, portwatch_events::EventId> = BTreeMap::new();
    let mut hosts = BTreeSet::new();
    for e in events.iter().filter(|e| e.node == "probe-a") {
        if !seen.insert(e.id) {
            continue; // a redelivered copy: the fold drops it
        }
        hosts.insert(e.observation.ip());
        if let Some(prev) = last_by_key.insert(e.key(), e.id) {
            assert!(
                prev < e.id,
                "events of {} out of order: {prev} then {}",
                e.key(),
                e.id
            );
        }
    }
    assert_eq!(hosts.len(), 256, "every host of zone a's job reached the log");
    finish(&stack, &mut sources);
    assert_eq!(projector.stop(), Some(0));
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let stack = Stack::start("so-poison", &stack_config("high_risk_ports = \"off\"", ""));
    let migrate = stack.portwatch(&["migrate", "--topics"]);
    assert!(migrate.status.success(), "{}", support::stderr(&migrate));
    let mut projector = stack.spawn(&["project"], "project.log");

    let valid = support::liveness_event("tester", "127.0.1.9".parse().unwrap(), true);
    let mut unknown_version: serde_json::Value = serde_json::from_str(&valid.to_json()).unwrap();
    unknown_version["v"] = 99.into();
    unknown_version["id"] = portwatch_events::EventId::new().to_string().into();
    let records = vec![
        ("127.0.1.9".to_string(), "{not json".to_string()),
        ("127.0.1.9".to_string(), unknown_version.to_string()),
        (valid.key(), valid.to_json()),
    ];
    stack.ns.within(move || {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9092")
            .create()
            .unwrap();
        for (key, body) in &records {
            producer
                .send(BaseRecord::to("portwatch.observations").key(key).payload(body))
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    });

    let letters = wait_for(Duration::from_secs(30), || {
        let out = stack.portwatch(&["events", "--kafka", "--dead-letters"]);
        let lines: Vec<serde_json::Value> = support::stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (lines.len() >= 2).then_some(lines)
    })
    .expect("two dead letters");
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["payload"], "{not json");
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("invalid event JSON"),
        "{letters:?}"
    );
    assert!(
        letters[1]["error"].as_str().unwrap().contains("version"),
        "{letters:?}"
    );
    assert!(letters[1]["source"]
        .as_str()
        .unwrap()
        .starts_with("portwatch.observations/"));

    // The valid event after them was folded: the projector kept going.
    let folded = wait_for(Duration::from_secs(30), || {
        let snap = stack.clickhouse_snapshot()?;
        snap["hosts"]
            .as_array()?
            .iter()
            .any(|h| h["ip"] == "127.0.1.9" && h["alive"] == true)
            .then_some(())
    });
    assert!(
        folded.is_some(),
        "valid event after the poison was not folded:\n{}",
        stack.log("project.log")
    );
    assert!(
        projector.0.try_wait().unwrap().is_none(),
        "projector stopped on poison"
    );
    assert_eq!(projector.stop(), Some(0));
}

#[test]
fn migrate_is_idempotent_and_refuses_a_newer_schema() {
    let stack = Stack::start("so-mig", &stack_config("", ""));
    let first = stack.portwatch(&["migrate"]);
    assert!(first.status.success(), "{}", support::stderr(&first));
    let report: serde_json::Value = serde_json::from_str(support::stdout(&first).trim()).unwrap();
    assert_eq!(report["from"], 0);
    assert_eq!(
        report["applied"],
        serde_json::json!([
            "001_init.sql",
            "002_read_model.sql",
            "003_reports.sql",
            "004_deliveries.sql",
            "005_projector_state.sql"
        ])
    );
    let tables = || {
        stack
            .sql("SELECT name FROM system.tables WHERE database = 'portwatch' ORDER BY name FORMAT TSV")
            .unwrap()
    };
    let before = tables();
    for table in [
        "observations",
        "port_state",
        "episodes",
        "hosts",
        "alerts",
        "jobs",
        "projector_offsets",
        "exposure_daily",
        "episode_reports",
        "deliveries",
        "projector_state",
    ] {
        assert!(before.lines().any(|l| l == table), "{table} missing: {before}");
    }

    let second = stack.portwatch(&["migrate"]);
    assert!(second.status.success(), "{}", support::stderr(&second));
    let report: serde_json::Value = serde_json::from_str(support::stdout(&second).trim()).unwrap();
    assert_eq!(report["from"], 5);
    assert_eq!(report["applied"], serde_json::json!([]));
    assert_eq!(tables(), before, "a second migrate changed nothing");
    assert_eq!(stack.sql_u64("SELECT count() FROM schema_migrations"), 5);

    // 002 interrupted half way (some of its columns added, the rest and its record
    // not): the next migrate finishes it, skipping the columns already there, and
    // runs 003, 004 and 005 again (their tables exist: nothing to do).
    for sql in [
        "ALTER TABLE alerts DROP COLUMN skey",
        "DROP TABLE schema_migrations",
        "CREATE TABLE schema_migrations (version UInt32, name String, applied_at DateTime('UTC')) ENGINE = MergeTree() ORDER BY version",
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, '001_init.sql', now())",
    ] {
        stack.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let resumed = stack.portwatch(&["migrate"]);
    assert!(resumed.status.success(), "{}", support::stderr(&resumed));
    let report: serde_json::Value = serde_json::from_str(support::stdout(&resumed).trim()).unwrap();
    assert_eq!(report["from"], 1);
    assert_eq!(
        report["applied"],
        serde_json::json!([
            "002_read_model.sql",
            "003_reports.sql",
            "004_deliveries.sql",
            "005_projector_state.sql"
        ])
    );
    assert_eq!(
        stack.sql_u64("SELECT count() FROM system.columns WHERE database = 'portwatch' AND table = 'alerts' AND name = 'skey'"),
        1
    );

    // A database from a newer portwatch: refused, by migrate and by the roles.
    stack
        .sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '099_future.sql', now())")
        .unwrap();
    let newer = stack.portwatch(&["migrate"]);
    assert!(!newer.status.success());
    let err = support::stderr(&newer);
    assert!(
        err.contains("schema version 99") && err.contains("newer"),
        "{err}"
    );
    let project = stack.portwatch(&["project"]);
    assert!(!project.status.success());
    assert!(support::stderr(&project).contains("schema version 99"));
    let snapshot = stack.portwatch(&["snapshot", "--clickhouse"]);
    assert!(!snapshot.status.success());
    assert_eq!(tables(), before, "nothing was touched");
}

#[test]
fn retention_drops_old_observation_partitions_and_jobs_only() {
    // Default [clickhouse] retention_months = 13.
    let stack = Stack::start("so-ret", &stack_config("high_risk_ports = \"off\"", ""));
    let migrate = stack.portwatch(&["migrate", "--topics"]);
    assert!(migrate.status.success(), "{}", support::stderr(&migrate));
    let insert = |id: &str, ts: &str| {
        stack
            .sql(&format!(
                "INSERT INTO observations (id, ts, ts_ms, kind, ip) VALUES ('{id}', toDateTime('{ts}', 'UTC'), 0, 'host_scan', '127.0.1.1')"
            ))
            .unwrap();
    };
    insert("old", "2020-01-15 00:00:00");
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    insert("recent", &now);
    // Jobs too: one issued in 2020, one now.
    for (id, at) in [("old-job", "2020-01-15 00:00:00"), ("recent-job", now.as_str())] {
        stack
            .sql(&format!(
                "INSERT INTO jobs (id, zone, task, state, issued_at, updated_at, ver) \
                 VALUES ('{id}', 'a', 'full_ports', 'done', toDateTime('{at}', 'UTC'), toDateTime('{at}', 'UTC'), 1)"
            ))
            .unwrap();
    }
    let mut control = stack.spawn(&["control"], "control.log");
    let dropped = wait_for(Duration::from_secs(30), || {
        (stack.sql_u64("SELECT count() FROM observations WHERE id = 'old'") == 0).then_some(())
    });
    assert!(
        dropped.is_some(),
        "old partition not dropped:\n{}",
        stack.log("control.log")
    );
    assert_eq!(
        stack.sql_u64("SELECT count() FROM observations WHERE id = 'recent'"),
        1
    );
    assert!(stack.log("control.log").contains("202001"));
    let deleted = wait_for(Duration::from_secs(30), || {
        (stack.sql_u64("SELECT count() FROM jobs WHERE id = 'old-job'") == 0).then_some(())
    });
    assert!(
        deleted.is_some(),
        "old job not deleted:\n{}",
        stack.log("control.log")
    );
    assert_eq!(
        stack.sql_u64("SELECT count() FROM jobs WHERE id = 'recent-job'"),
        1
    );
    assert_eq!(control.stop(), Some(0));
}

#[test]
fn spool_overflow_is_refused_counted_and_loses_nothing_recorded() {
    use portwatch_ingest::{EventLog, KafkaSettings, LogError, SpoolLog, SpoolSettings};

    // A namespace with no broker at all: the spool can only fill up.
    let ns = support::Netns::new("spool");
    let dir = support::tempdir();
    let path = dir.path().join("spool.db");
    let kafka = KafkaSettings::new("127.0.0.1:9092", "t.", 1);
    let event = |i: u8| support::liveness_event("n", std::net::IpAddr::from([127, 0, 1, i]), true);
    let size = event(0).to_json().len() as u64;
    let settings = SpoolSettings {
        path: path.clone(),
        max_bytes: size * 10 + size / 2, // room for 10 events
        produce_timeout: Duration::from_secs(1),
    };
    let (accepted, refused, stats) = {
        let (settings, kafka) = (settings.clone(), kafka.clone());
        ns.within(move || {
            let spool = SpoolLog::open(settings, &kafka).unwrap();
            let mut accepted = 0;
            let mut refused = Vec::new();
            for i in 0..15u8 {
                match spool.append(&[event(i)]) {
                    Ok(_) => accepted += 1,
                    Err(e) => refused.push(e),
                }
            }
            let stats = spool.stats();
            spool.close();
            (accepted, refused, stats)
        })
    };
    assert_eq!(accepted, 10, "the spool takes events while it has room");
    assert_eq!(refused.len(), 5);
    match &refused[4] {
        LogError::SpoolFull {
            path: p,
            limit,
            refused,
            ..
        } => {
            assert_eq!(p, &path.display().to_string());
            assert_eq!(*limit, settings.max_bytes);
            assert_eq!(*refused, 5, "refusals are counted");
        }
        other => panic!("expected SpoolFull, got {other}"),
    }
    assert!(refused[0].to_string().contains("is full"), "{}", refused[0]);
    assert_eq!((stats.spooled, stats.refused, stats.delivered), (10, 5, 0));

    // Nothing recorded is lost: a restarted node finds the 10 events still spooled.
    let stats = ns.within(move || {
        let spool = SpoolLog::open(settings, &kafka).unwrap();
        let stats = spool.stats();
        spool.close();
        stats
    });
    assert_eq!(stats.spooled, 10);
}
