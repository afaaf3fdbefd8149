//! The journal of decisions on Apache Kafka never forgets, and a control plane never
//! starts on a journal that has: `migrate --topics` gives `decisions` unlimited
//! retention and `observations` `[kafka] observations_retention`, repairing topics
//! made before (read back with Kafka's admin API, other settings kept); once the
//! journal's first records are deleted (DeleteRecords), `control` refuses to start,
//! naming the topic and the offsets, and mints no second admin token.

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
    let decisions = settings_of(&stack, "portwatch.decisions");
    assert_eq!(decisions["retention.ms"], "-1");
    assert_eq!(decisions["retention.bytes"], "-1");
    assert_eq!(
        decisions["max.message.bytes"], "2000000",
        "the operator's setting is kept"
    );
    assert_eq!(
        settings_of(&stack, "portwatch.observations")["retention.ms"],
        (30u64 * 24 * 3600 * 1000).to_string()
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
