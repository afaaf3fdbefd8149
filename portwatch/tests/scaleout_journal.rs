//! The journal of decisions on Apache Kafka never forgets, and a control plane never
//! starts on a journal that has: `migrate --topics` gives `decisions` unlimited
//! retention and `observations` `[kafka] observations_retention`, repairing topics
//! made before (read back with Kafka's admin API, other settings kept); once the
//! journal's first records are deleted (DeleteRecords), `control` refuses to start,
//! naming the topic and the offsets, and mints no second admin token. A projector
//! whose checkpoint is older than what the observations topic still holds stops the
//! same way, and folds on from the topic's start only when told to (`--accept-gap`).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use support::scaleout::{stack_config, Stack, BROKER_PORT};
use support::{stderr, stdout, wait_for};

fn admin() -> AdminClient<DefaultClientContext> {
    portwatch_ingest::KafkaSettings::new(&format!("127.0.0.1:{BROKER_PORT}"), "portwatch.", 4)
        .client_config()
        .create()
        .unwrap()
}

/// The settings of `topic` the broker reports, by name.
fn settings_of(stack: &Stack, topic: &'static str) -> BTreeMap<String, String> {
    stack.ns.within(move || {
        let described = futures::executor::block_on(
            admin().describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
        )
        .unwrap();
        let resource = described.into_iter().next().unwrap().unwrap();
        resource
            .entries
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect()
    })
}

#[test]
fn the_journal_keeps_everything_and_a_control_plane_refuses_a_gap() {
    let stack = Stack::start("so-jrn", &stack_config("high_risk_ports = \"off\"", ""));
    // The journal's topics as an earlier release made them: the broker's default
    // retention (7 days), plus a setting of the operator's own.
    let made = stack.ns.within(|| {
        let topics = [
            NewTopic::new("portwatch.decisions", 1, TopicReplication::Fixed(1))
                .set("max.message.bytes", "2000000"),
            NewTopic::new("portwatch.observations", 4, TopicReplication::Fixed(1)),
        ];
        futures::executor::block_on(admin().create_topics(&topics, &AdminOptions::new()))
            .unwrap()
            .into_iter()
            .all(|r| r.is_ok())
    });
    assert!(made);
    assert_eq!(
        settings_of(&stack, "portwatch.decisions")["retention.ms"],
        "604800000"
    );

    let out = stack.portwatch(&["migrate", "--topics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let repaired: Vec<(String, String)> = report["topic_settings_repaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["topic"].as_str().unwrap().into(),
                r["key"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        repaired,
        // retention.bytes is unlimited by the broker's default already.
        [
            ("portwatch.decisions".to_string(), "retention.ms".to_string()),
            ("portwatch.observations".into(), "retention.ms".into()),
        ],
        "{report}"
    );
    // An accepted change reaches the broker's own view through its metadata log a
    // moment later.
    let month = (30u64 * 24 * 3600 * 1000).to_string();
    let applied = wait_for(Duration::from_secs(15), || {
        let decisions = settings_of(&stack, "portwatch.decisions");
        let observations = settings_of(&stack, "portwatch.observations");
        (decisions["retention.ms"] == "-1" && observations["retention.ms"] == month).then_some(decisions)
    });
    let decisions = applied.unwrap_or_else(|| {
        panic!(
            "the repaired retention never showed: {:?}",
            settings_of(&stack, "portwatch.decisions")
        )
    });
    assert_eq!(decisions["retention.ms"], "-1");
    assert_eq!(decisions["retention.bytes"], "-1");
    assert_eq!(
        decisions["max.message.bytes"], "2000000",
        "the operator's setting is kept"
    );
    assert_eq!(
        settings_of(&stack, "portwatch.observations")["retention.ms"],
        month
    );
    // Run again: nothing left to repair.
    let out = stack.portwatch(&["migrate", "--topics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(again["topic_settings_repaired"], serde_json::json!([]), "{again}");

    // A control plane journals its first admin (and shows the token once); two more
    // users follow.
    let mut control = stack.spawn(&["control"], "control.log");
    let token_file = stack.path("data/admin-token");
    let first = wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(&token_file).ok()
    })
    .unwrap_or_else(|| panic!("no first admin token:\n{}", stack.log("control.log")));
    stack.token("ann", "viewer");
    stack.token("bob", "approver");
    assert_eq!(control.stop(), Some(0));

    // The journal's first records are deleted.
    let deleted = stack.ns.within(|| {
        let mut upto = rdkafka::TopicPartitionList::new();
        upto.add_partition_offset("portwatch.decisions", 0, rdkafka::Offset::Offset(2))
            .unwrap();
        futures::executor::block_on(admin().delete_records(&upto, &AdminOptions::new()))
            .map(|tpl| tpl.elements().iter().all(|e| e.error().is_ok()))
            .map_err(|e| e.to_string())
    });
    assert_eq!(deleted, Ok(true));

    // The control plane refuses to start, naming the gap; nothing was served or
    // minted.
    let mut again = stack.spawn(&["control"], "control-gap.log");
    let started = Instant::now();
    let code =
        wait_for(Duration::from_secs(60), || again.0.try_wait().ok().flatten()).map(|status| status.code());
    let log = stack.log("control-gap.log");
    assert!(
        matches!(code, Some(Some(c)) if c != 0),
        "control must end with an error, not wait or serve ({:?} after {:?}):\n{log}",
        code,
        started.elapsed()
    );
    assert!(
        log.contains("kafka topic portwatch.decisions starts at offset 2, but this reader has folded it only up to offset 0"),
        "the gap is named:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        first,
        "no second admin token"
    );
    assert!(!log.contains("control plane is up"), "{log}");
}

/// The high watermark of each partition of the observations topic.
fn observation_ends(stack: &Stack) -> Vec<i64> {
    stack.ns.within(|| {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer =
            portwatch_ingest::KafkaSettings::new(&format!("127.0.0.1:{BROKER_PORT}"), "portwatch.", 4)
                .consumer_config("portwatch-test-watermarks")
                .create()
                .unwrap();
        (0..4)
            .map(|p| {
                consumer
                    .fetch_watermarks("portwatch.observations", p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .collect()
    })
}

#[test]
fn a_projector_refuses_observations_that_expired_unfolded_unless_told_to_go_on() {
    let stack = Stack::start("so-gap", &stack_config("high_risk_ports = \"2s\"", ""));
    let _redis = stack.ns.serve("127.0.1.7:6379");
    let _control = stack.spawn(&["control"], "control.log");
    let _probe = stack.spawn_probe("a");
    let mut projector = stack.spawn(&["project"], "project.log");
    // (Zero until the first role made the database.)
    let folded = || {
        stack
            .sql("SELECT count() FROM observations")
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(90), || (folded() > 0).then_some(()))
        .unwrap_or_else(|| panic!("nothing folded:\n{}", stack.log("project.log")));
    assert_eq!(projector.stop(), Some(0));

    // While no projector runs, more scans arrive; then every record the topic holds
    // is deleted, as retention would after the projectors were down too long.
    let before = observation_ends(&stack);
    let grown = wait_for(Duration::from_secs(60), || {
        let now = observation_ends(&stack);
        (now.iter().sum::<i64>() >= before.iter().sum::<i64>() + 3).then_some(now)
    })
    .expect("no scans while the projector was down");
    let deleted = stack.ns.within(move || {
        let mut upto = rdkafka::TopicPartitionList::new();
        for (p, end) in grown.iter().enumerate() {
            upto.add_partition_offset("portwatch.observations", p as i32, rdkafka::Offset::Offset(*end))
                .unwrap();
        }
        futures::executor::block_on(admin().delete_records(&upto, &AdminOptions::new()))
            .map(|tpl| tpl.elements().iter().all(|e| e.error().is_ok()))
            .map_err(|e| e.to_string())
    });
    assert_eq!(deleted, Ok(true));

    // The projector stops, naming the partition and the offsets, and says what to do.
    let mut refused = stack.spawn(&["project"], "project-gap.log");
    let code =
        wait_for(Duration::from_secs(60), || refused.0.try_wait().ok().flatten()).map(|status| status.code());
    let log = stack.log("project-gap.log");
    assert!(matches!(code, Some(Some(c)) if c != 0), "{code:?}:\n{log}");
    eprintln!(
        "refused: {}",
        log.lines()
            .rev()
            .find(|l| l.contains("--accept-gap"))
            .unwrap_or_default()
    );
    assert!(
        log.contains("kafka topic portwatch.observations partition ")
            && log.contains("but this reader has folded it only up to offset")
            && log.contains("--accept-gap"),
        "the gap is named:\n{log}"
    );

    // Told to, it folds on from where the topic starts: new scans are projected.
    let _accepting = stack.spawn(&["project", "--accept-gap"], "project-accept.log");
    let at_restart = folded();
    // (Each partition's gap is met when its first record arrives: wait for both.)
    let went_on = wait_for(Duration::from_secs(60), || {
        let log = stack.log("project-accept.log");
        (folded() > at_restart && log.contains("records expired before any projector folded them"))
            .then_some(())
    });
    assert!(
        went_on.is_some(),
        "nothing folded past the gap after --accept-gap:\n{}",
        stack.log("project-accept.log")
    );
}
