//! Scale-out end to end as production runs it: Apache Kafka reachable only over
//! SASL_SSL (SCRAM, client certificates, ACLs that give each role's user only its
//! topics) and ClickHouse only over HTTPS, both behind a private CA. A control
//! plane, two probe nodes in two zones scanning a loopback fleet, two projectors
//! sharing the partitions, a console session. The ClickHouse state must equal the
//! embedded mode's state for the same events, and SQL over the raw observations
//! must answer when a port was first and last seen open.
//!
//! Everything runs inside a network namespace of the test's own: the fleet, the
//! services and every probe stay on its private loopback.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::scaleout::{expected_alerts, snapshot_diff, stack_config, Stack, API};
use support::wait_for;

fn open_ports(stack: &Stack) -> Option<BTreeSet<(String, u64)>> {
    let ports = stack.ns.get_json(API, "/api/v1/ports")?;
    Some(
        ports
            .as_array()?
            .iter()
            .map(|p| (p["ip"].as_str().unwrap().to_string(), p["port"].as_u64().unwrap()))
            .collect(),
    )
}

#[test]
fn two_zones_two_projectors_match_the_embedded_fold() {
    let stack = Stack::start_secure("so-e2e", &stack_config("high_risk_ports = \"2s\"", ""));
    let fleet = [
        ("127.0.1.2", 22),
        ("127.0.1.3", 3306),
        ("127.0.1.3", 8080),
        ("127.0.2.2", 6379),
        ("127.0.2.5", 5432),
        ("127.0.2.5", 27017),
    ];
    let mut servers: Vec<_> = fleet
        .iter()
        .map(|(ip, port)| stack.ns.serve(&format!("{ip}:{port}")))
        .collect();

    let mut control = stack.spawn(&["control"], "control.log");
    let mut probes = [stack.spawn_probe("a"), stack.spawn_probe("b")];
    let mut projectors = [
        stack.spawn(&["project"], "project-1.log"),
        stack.spawn(&["project"], "project-2.log"),
    ];

    // Every listener shows up in the control plane's API (state from ClickHouse).
    let want: BTreeSet<(String, u64)> = fleet.iter().map(|(ip, p)| (ip.to_string(), *p)).collect();
    let seen = wait_for(Duration::from_secs(60), || {
        open_ports(&stack).filter(|s| *s == want)
    });
    assert_eq!(
        seen.as_ref(),
        Some(&want),
        "open ports never matched the fleet; control log:\n{}\nprobe a:\n{}",
        stack.log("control.log"),
        stack.log("probe-a.log")
    );

    // A console session: a viewer's token (journalled by the operator's shell as
    // Kafka's admin) opens one, and the session reads the state.
    let token = stack.token("vera", "viewer");
    let (cookie, _csrf) = stack.ns.sign_in(API, &token);
    let ports = stack
        .ns
        .http("GET", API, "/api/v1/ports", &[("Cookie", cookie.as_str())], "")
        .expect("ports answer");
    assert_eq!(ports.status, 200, "{}", ports.body);
    assert!(ports.body.contains("127.0.2.5"), "{}", ports.body);

    // Close one port: covering scans declare it closed and its episode ends.
    servers.pop();
    let closed = wait_for(Duration::from_secs(30), || {
        let eps = stack.ns.get_json(API, "/api/v1/episodes")?;
        eps.as_array()?
            .iter()
            .find(|e| e["port"] == 27017 && !e["closed_at"].is_null())
            .cloned()
    });
    assert!(closed.is_some(), "the closed port's episode never ended");

    // Both probe nodes report healthy heartbeats, each in its zone.
    let nodes = wait_for(Duration::from_secs(10), || {
        let nodes = stack.ns.get_json(API, "/api/v1/nodes")?;
        let list: BTreeSet<(String, String, String)> = nodes
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap_or("").to_string(),
                    n["zone"].as_str().unwrap_or("").to_string(),
                    n["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        (list.len() == 2).then_some(list)
    })
    .expect("two probe nodes listed");
    assert_eq!(
        nodes,
        BTreeSet::from([
            ("probe-a".into(), "a".into(), "ok".into()),
            ("probe-b".into(), "b".into(), "ok".into())
        ])
    );

    // Chunk attempts went to the right zone's node (passes name no node).
    let jobs = stack
        .sql(
            "SELECT zone, node, count() FROM jobs FINAL WHERE state = 'done' \
             AND visitParamExtractString(detail, 'pass') != '' GROUP BY zone, node ORDER BY zone FORMAT TSV",
        )
        .unwrap();
    let rows: Vec<Vec<&str>> = jobs.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "done jobs by zone and node: {jobs}");
    assert_eq!((rows[0][0], rows[0][1]), ("a", "probe-a"));
    assert_eq!((rows[1][0], rows[1][1]), ("b", "probe-b"));

    // Stop the producers of events; the projectors catch up.
    control.stop();
    for p in &mut probes {
        assert_eq!(p.stop(), Some(0), "probe node exits cleanly");
    }
    let (ch, embedded, events) = stack.converged(Duration::from_secs(60));
    assert!(events.len() >= 40, "a real stream of events: {}", events.len());
    assert!(
        ch == embedded,
        "ClickHouse state (left) differs from the embedded fold (right) of the same events:\n{}",
        snapshot_diff(&ch, &embedded)
    );
    assert_eq!(ch["episodes"].as_array().unwrap().len(), fleet.len());

    // The archive alone gives the same state: every projection folded again from
    // ClickHouse's observations (over HTTPS) equals the fold of the log.
    let archive = stack.path("from-archive");
    let out = stack.portwatch(&["rebuild", "--from-clickhouse", "--to", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "rebuild --from-clickhouse: {}",
        support::stderr(&out)
    );
    let out = stack.portwatch(&["--data", archive.to_str().unwrap(), "snapshot"]);
    assert!(out.status.success(), "snapshot: {}", support::stderr(&out));
    let rebuilt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rebuilt == embedded,
        "rebuilt from ClickHouse (left) differs from the fold of the log (right):\n{}",
        snapshot_diff(&rebuilt, &embedded)
    );
    // The archive read in small pages: every event once, in log order.
    let ca = stack.secure.as_ref().unwrap().tls.join("ca.pem");
    let pages = stack.ns.within(move || {
        let store = portwatch_stores::ClickHouseStore::new(portwatch_stores::ClickHouseSettings {
            url: format!("https://127.0.0.1:{}", support::scaleout::CH_PORT),
            database: "portwatch".into(),
            user: None,
            password: None,
            ca_file: Some(ca),
            validation: false,
            compression: true,
        })
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (mut after, mut all) = (None, Vec::new());
        loop {
            let page = runtime.block_on(store.archived(after, 7)).unwrap();
            let Some(last) = page.last() else { break all };
            after = Some((last.0, last.1));
            all.extend(page.into_iter().map(|(p, o, _)| (p, o)));
        }
    });
    let distinct: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(
        pages.len(),
        distinct.len(),
        "every archived event read once across pages of 7"
    );
    assert!(
        pages.windows(2).all(|w| w[0] < w[1]),
        "in (partition, offset) order: {pages:?}"
    );
    // It refuses to overwrite what it made.
    let out = stack.portwatch(&["rebuild", "--from-clickhouse", "--to", archive.to_str().unwrap()]);
    assert!(!out.status.success() && support::stderr(&out).contains("already holds"));

    // The two projectors shared the partitions.
    for log in ["project-1.log", "project-2.log"] {
        let text = stack.log(log);
        assert!(
            text.lines()
                .any(|l| l.contains("partitions assigned") && !l.contains("partitions=[]")),
            "{log} never owned a partition:\n{text}"
        );
    }

    // SQL over raw observations: first and last seen open, to the second.
    let row = ch["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ip"] == "127.0.1.3" && p["port"] == 3306)
        .unwrap()
        .clone();
    let answer = stack
        .sql(
            "SELECT toUnixTimestamp(min(ts)), toUnixTimestamp(max(ts)) FROM observations FINAL \
             ARRAY JOIN open_ports AS port WHERE ip = '127.0.1.3' AND port = 3306 AND kind = 'host_scan' FORMAT TSV",
        )
        .unwrap();
    let secs = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    assert_eq!(
        answer.trim(),
        format!("{}\t{}", secs(&row["first_seen"]), secs(&row["last_seen"])),
        "first/last seen from raw observations vs port state"
    );

    // Alerts: one per opening and one per closing, never two with one id.
    stack.assert_no_loss_no_duplicates(&events);
    assert_eq!(
        stack.sql_u64("SELECT count() FROM alerts FINAL"),
        expected_alerts(&ch)
    );
    assert_eq!(
        stack.sql_u64("SELECT count() FROM alerts FINAL WHERE kind = 'exposure_closed' AND port = 27017"),
        1
    );
    // Every Grafana panel's query runs on this ClickHouse and returns rows.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../grafana/dashboards/portwatch-overview.json"
        ))
        .unwrap(),
    )
    .unwrap();
    // The control plane writes episode_reports (at its start, then every 10 s): run
    // it again over what was recorded, and wait for rows a while.
    let mut control = stack.spawn(&["control"], "control-again.log");
    for panel in dash["panels"].as_array().unwrap() {
        let sql = time_filter(panel["targets"][0]["rawSql"].as_str().unwrap());
        let out = stack.sql(&format!("{sql} FORMAT TSV"));
        assert!(out.is_ok(), "panel {}: {out:?}", panel["title"]);
        let rows = wait_for(Duration::from_secs(30), || {
            stack
                .sql(&format!("{sql} FORMAT TSV"))
                .ok()
                .filter(|o| !o.trim().is_empty())
        });
        assert!(rows.is_some(), "panel {} returned nothing", panel["title"]);
    }
    // The SQL examples in sql/README.md run as written (on the fleet's addresses).
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/README.md")).unwrap();
    let examples: Vec<&str> = doc
        .split("```sql")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(examples.len() >= 3, "sql/README.md has examples");
    for sql in examples {
        let sql = sql
            .replace("10.1.0.7", "127.0.1.3")
            .replace("'10.1.'", "'127.0.'");
        let sql = sql.trim().trim_end_matches(';');
        let out = stack.sql(sql);
        assert!(out.is_ok(), "sql/README.md example failed: {sql}\n{out:?}");
        let rows = wait_for(Duration::from_secs(30), || {
            stack.sql(sql).ok().filter(|o| !o.trim().is_empty())
        });
        assert!(rows.is_some(), "sql/README.md example returned nothing: {sql}");
    }
    assert_eq!(control.stop(), Some(0), "control plane exits cleanly");
    for p in &mut projectors {
        assert_eq!(p.stop(), Some(0), "projector exits cleanly");
    }
}

/// Grafana's `$__timeFilter(column)` macro as the last day.
fn time_filter(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$__timeFilter(".len()..];
        let Some(end) = after.find(')') else { break };
        out.push_str(&format!("{} >= now() - 86400", &after[..end]));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}
