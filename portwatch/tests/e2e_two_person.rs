//! The two-person rule against an admin who tries to be their own second person,
//! in both deployments, with the real binary: `portwatch up` (embedded) and
//! `portwatch control` on a real broker and a real ClickHouse (scale-out). The admin
//! files an approval and proposes a block of a real open port, then tries to get
//! them decided through a token they mint for an existing approver (refused at
//! issue) and through an approver they create (refused at the decision, 403 naming
//! the rule); an approver with a token of their own decides. The audit (API and
//! `portwatch audit --json`) lists every refused attempt with its token and issuer.

#![allow(clippy::print_stderr)]

mod support;

use std::time::Duration;

use support::scaleout::{stack_config, Stack};
use support::{loopback_up_config, stderr, stdout, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18097";

/// What the admin tries, against the API at `api`, for the open port `host:6379`.
/// `admin` (ada) and `bob` (an approver) have tokens made on the machine. Returns the
/// ids of the approval and the block.
fn admin_tries_to_decide_alone(
    ns: &Netns,
    api: &str,
    admin: &str,
    bob: &str,
    host: &str,
) -> (String, String) {
    let body = format!(
        r#"{{"target":"{host}","ports":"6379","service":"redis","reason":"cache for the shop","owner":"web-team","expires":"30d"}}"#
    );
    let (status, filed) = ns.api(api, "POST", "/api/v1/approvals", admin, &body);
    assert_eq!(status, 201, "{filed}");
    let approval = filed["approval_id"].as_str().expect("id").to_string();
    let block_body =
        format!(r#"{{"ip":"{host}","port":6379,"reason":"Redis open to everyone","duration":"10m"}}"#);
    let (status, proposed) = ns.api(api, "POST", "/api/v1/blocks", admin, &block_body);
    assert_eq!(status, 201, "{proposed}");
    let block = proposed["block_id"].as_str().expect("id").to_string();

    // 1. A token minted for bob, an existing approver: refused at issue.
    let (status, refused) = ns.api(api, "POST", "/api/v1/tokens", admin, r#"{"user":"bob"}"#);
    assert_eq!(status, 403, "a token minted for bob: {refused}");

    // 2. An approver the admin creates: refused at the decision, naming the rule.
    let (status, carol) = ns.api(
        api,
        "POST",
        "/api/v1/tokens",
        admin,
        r#"{"user":"carol","role":"approver"}"#,
    );
    assert_eq!(status, 201, "{carol}");
    let carol = carol["token"].as_str().expect("token").to_string();
    // The control plane follows the journal every second: wait until it knows carol.
    wait_for(Duration::from_secs(20), || {
        ns.get_json_as(api, "/api/v1/whoami", &carol)
    })
    .expect("carol's token known");
    let (status, refused) = ns.api(
        api,
        "POST",
        &format!("/api/v1/approvals/{approval}/approve"),
        &carol,
        "",
    );
    assert_eq!(status, 403, "carol approved the admin's request: {refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("two-person rule") && e.contains("issued by")),
        "{refused}"
    );
    let (status, refused) = ns.api(
        api,
        "POST",
        &format!("/api/v1/blocks/{block}/confirm"),
        &carol,
        "",
    );
    assert_eq!(status, 403, "carol confirmed the admin's block: {refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("two-person rule")),
        "{refused}"
    );

    // 3. The front door still opens for a real second person.
    let (status, approved) = ns.api(
        api,
        "POST",
        &format!("/api/v1/approvals/{approval}/approve"),
        bob,
        "",
    );
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["decision"]["by"], "bob");
    let (status, confirmed) = ns.api(api, "POST", &format!("/api/v1/blocks/{block}/confirm"), bob, "");
    assert_eq!(status, 200, "{confirmed}");
    (approval, block)
}

/// The refused attempts in the audit at `api` and in `audit` (the CLI's JSON Lines):
/// carol's approval and confirmation, and the admin's token for bob.
fn refusals_on_record(ns: &Netns, api: &str, admin: &str, ids: &(String, String), cli: &str) {
    let (status, refused) = ns.api(api, "GET", "/api/v1/audit?kind=refused", admin, "");
    assert_eq!(status, 200, "{refused}");
    let rows = refused.as_array().expect("array");
    let seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|e| {
            (
                e["user"].as_str().unwrap_or_default().to_string(),
                e["subject"].as_str().unwrap_or_default().to_string(),
                e["issuer"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (user, subject) in [
        ("carol", ids.0.as_str()),
        ("carol", ids.1.as_str()),
        ("ada", "bob"),
    ] {
        let row = rows
            .iter()
            .find(|e| e["user"] == user && e["subject"] == subject)
            .unwrap_or_else(|| panic!("no refusal of {user} on {subject}: {seen:?}"));
        assert!(row["token"].as_str().is_some_and(|t| t.len() == 16), "{row}");
        assert!(
            row["client"].as_str().is_some_and(|c| c.starts_with("127.")),
            "{row}"
        );
        assert!(row["rule"].is_string(), "{row}");
        if user == "carol" {
            assert_eq!(
                row["issuer"], "ada",
                "carol's token was issued by the admin: {row}"
            );
        }
    }
    let lines: Vec<serde_json::Value> = cli
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for subject in [&ids.0, &ids.1] {
        assert!(
            lines
                .iter()
                .any(|e| e["kind"] == "refused" && e["user"] == "carol" && e["subject"] == subject.as_str()),
            "portwatch audit lacks carol's attempt on {subject}: {cli}"
        );
    }
}

#[test]
fn embedded_an_admin_cannot_be_their_own_second_person() {
    let ns = Netns::new("twoperson");
    let dir = tempdir();
    let host = "127.0.0.8";
    let cfg = loopback_up_config(
        dir.path(),
        &format!("[[assets]]\ncidr = \"{host}/32\""),
        "high_risk_ports = \"1s\"",
        API,
        "",
    );
    let cfg = cfg.to_str().expect("utf8").to_string();
    let _redis = ns.serve(&format!("{host}:6379"));
    let log = dir.path().join("up.log");
    let mut up = Proc(ns.spawn_portwatch(&["up", "--config", &cfg], &log));
    let admin = ns.token(&cfg, "ada", "admin");
    let bob = ns.token(&cfg, "bob", "approver");
    wait_for(Duration::from_secs(30), || {
        let ports = ns.get_json_as(API, &format!("/api/v1/ports?ip={host}"), &admin)?;
        ports.to_string().contains("6379").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "6379 never seen open; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let ids = admin_tries_to_decide_alone(&ns, API, &admin, &bob, host);
    let out = ns.portwatch(&["--config", &cfg, "audit", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    refusals_on_record(&ns, API, &admin, &ids, &stdout(&out));
    assert_eq!(up.stop(), Some(0));
}

#[test]
fn scaleout_an_admin_cannot_be_their_own_second_person() {
    let stack = Stack::start("twoperson-so", &stack_config("high_risk_ports = \"1s\"", ""));
    let _redis = stack.ns.serve("127.0.1.2:6379");
    let mut control = stack.spawn(&["control"], "control.log");
    let _probe = stack.spawn_probe("a");
    let _projector = stack.spawn(&["project"], "project.log");
    let api = support::scaleout::API;
    wait_for(Duration::from_secs(60), || {
        stack.ns.http_get(api, "/healthz").map(|_| ())
    })
    .unwrap_or_else(|| panic!("control plane not up; log:\n{}", stack.log("control.log")));
    let admin = stack.token("ada", "admin");
    let bob = stack.token("bob", "approver");
    wait_for(Duration::from_secs(60), || {
        let ports = stack.ns.get_json_as(api, "/api/v1/ports?ip=127.0.1.2", &admin)?;
        ports.to_string().contains("6379").then_some(())
    })
    .unwrap_or_else(|| panic!("6379 never seen open; log:\n{}", stack.log("control.log")));
    wait_for(Duration::from_secs(20), || {
        stack.ns.get_json_as(api, "/api/v1/whoami", &bob)
    })
    .expect("bob's token known");
    let ids = admin_tries_to_decide_alone(&stack.ns, api, &admin, &bob, "127.0.1.2");
    let out = stack.portwatch(&["audit", "--kafka", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    refusals_on_record(&stack.ns, api, &admin, &ids, &stdout(&out));
    assert_eq!(control.stop(), Some(0));
}
