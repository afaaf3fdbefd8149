//! A journal only portwatch writes, in both deployments: decision records written
//! straight into the journal (the embedded `events.db`, the scale-out `decisions`
//! topic on a real broker) without a MAC or with one made under another key grant
//! nothing: an approval they "grant" stays pending, a role they "give" is not given,
//! a token they "revoke" still works. Each is counted
//! (`portwatch_ledger_rejected_total` on `/metrics`) and logged loudly.

#![allow(clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::scaleout::{stack_config, Stack, BROKER_PORT};
use support::{loopback_up_config, stderr, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18099";

/// The forged records: a grant of `approval` by arno, olga made admin (both without
/// a MAC), and ada's token revoked under a MAC of another key.
fn forgeries(approval: &str, arno_token: &str, ada_token: &str) -> Vec<(String, String)> {
    let now = chrono::Utc::now().to_rfc3339();
    let v = portwatch_events::SCHEMA_VERSION;
    let grant = serde_json::json!({
        "v": v, "id": format!("granted:{approval}"), "at": now, "by": "arno", "token": arno_token,
        "kind": "approval_granted", "approval_id": approval, "bound": [],
    });
    let promote = serde_json::json!({
        "v": v, "id": format!("user:olga:admin:{}", chrono::Utc::now().timestamp_micros()), "at": now,
        "by": "ada", "token": ada_token, "kind": "user_set", "user": "olga", "role": "admin",
    });
    let revoke = serde_json::json!({
        "v": v, "id": format!("revoked:{ada_token}"), "at": now, "by": "ada", "token": ada_token,
        "kind": "token_revoked", "token_id": ada_token,
    });
    let other_key = portwatch_ledger::Key::from_hex(&"5a".repeat(32)).expect("key");
    let wrong_mac = portwatch_ledger::seal(
        &other_key,
        &portwatch_projections::Decision::from_json(&revoke.to_string()).expect("decision"),
    );
    vec![
        (grant["id"].as_str().expect("id").to_string(), grant.to_string()),
        (
            promote["id"].as_str().expect("id").to_string(),
            promote.to_string(),
        ),
        (revoke["id"].as_str().expect("id").to_string(), wrong_mac),
    ]
}

/// Tokens of olga (operator), arno (approver) and ada (admin), by name.
type Tokens = BTreeMap<&'static str, String>;

fn token_id(ns: &Netns, api: &str, token: &str) -> String {
    wait_for(Duration::from_secs(20), || {
        ns.get_json_as(api, "/api/v1/whoami", token)
    })
    .expect("token known")["token"]
        .as_str()
        .expect("id")
        .to_string()
}

/// File an approval as olga, write the forgeries with `write`, and check that none
/// took effect and all three were rejected, counted and logged (`log`).
fn forged_records_grant_nothing(
    ns: &Netns,
    api: &str,
    tokens: &Tokens,
    write: impl FnOnce(Vec<(String, String)>),
    log: impl Fn() -> String,
) {
    let body = r#"{"target":"HOST","ports":"6379","service":"redis","reason":"cache","owner":"web","expires":"30d"}"#;
    let host = if api == API { "127.0.0.8" } else { "127.0.1.2" };
    let (status, filed) = ns.api(
        api,
        "POST",
        "/api/v1/approvals",
        &tokens["olga"],
        &body.replace("HOST", host),
    );
    assert_eq!(status, 201, "{filed}");
    let approval = filed["approval_id"].as_str().expect("id").to_string();
    let arno = token_id(ns, api, &tokens["arno"]);
    let ada = token_id(ns, api, &tokens["ada"]);
    write(forgeries(&approval, &arno, &ada));

    let rejected = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("portwatch_ledger_rejected_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let metrics = wait_for(Duration::from_secs(30), || {
        let (_, text) = ns.http_get(api, "/metrics")?;
        (rejected(&text) >= 3).then_some(text)
    })
    .unwrap_or_else(|| panic!("the forgeries were not rejected and counted; log:\n{}", log()));
    eprintln!("portwatch_ledger_rejected_total = {}", rejected(&metrics));
    let (_, approvals) = ns.api(api, "GET", "/api/v1/approvals", &tokens["ada"], "");
    let a = approvals
        .as_array()
        .and_then(|a| a.iter().find(|a| a["approval_id"] == approval.as_str()).cloned())
        .expect("the approval");
    assert_eq!(a["state"], "pending", "a forged grant took effect: {a}");
    let (_, olga) = ns.api(api, "GET", "/api/v1/whoami", &tokens["olga"], "");
    assert_eq!(olga["role"], "operator", "a forged role took effect: {olga}");
    let (status, _) = ns.api(api, "GET", "/api/v1/whoami", &tokens["ada"], "");
    assert_eq!(status, 200, "a forged revocation took effect");
    let text = log();
    assert!(
        text.matches("REJECTED a journal record").count() >= 3,
        "not logged loudly:\n{text}"
    );
    assert!(
        text.contains("carries no MAC") && text.contains("does not match"),
        "{text}"
    );
}

#[test]
fn embedded_forged_decisions_grant_nothing() {
    let ns = Netns::new("ledger");
    let dir = tempdir();
    let cfg = loopback_up_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.8/32\"",
        "high_risk_ports = \"off\"",
        API,
        "",
    );
    let cfg = cfg.to_str().expect("utf8").to_string();
    let log = dir.path().join("up.log");
    let _up = Proc(ns.spawn_portwatch(&["up", "--config", &cfg], &log));
    let mut tokens = Tokens::new();
    for (user, role) in [("olga", "operator"), ("arno", "approver"), ("ada", "admin")] {
        tokens.insert(user, ns.token(&cfg, user, role));
    }
    let events_db = dir.path().join("data/events.db");
    forged_records_grant_nothing(
        &ns,
        API,
        &tokens,
        |records| support::write_into_journal(&events_db, &records),
        || std::fs::read_to_string(&log).unwrap_or_default(),
    );
    // The shell's fold refuses them as well.
    let out = ns.portwatch(&["--config", &cfg, "audit", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!support::stdout(&out).contains("approval_granted"));
}

#[test]
fn scaleout_forged_decisions_grant_nothing() {
    let stack = Stack::start("ledger-so", &stack_config("", ""));
    let _control = stack.spawn(&["control"], "control.log");
    let api = support::scaleout::API;
    wait_for(Duration::from_secs(60), || {
        stack.ns.http_get(api, "/healthz").map(|_| ())
    })
    .unwrap_or_else(|| panic!("control plane not up; log:\n{}", stack.log("control.log")));
    let mut tokens = Tokens::new();
    for (user, role) in [("olga", "operator"), ("arno", "approver"), ("ada", "admin")] {
        tokens.insert(user, stack.token(user, role));
    }
    forged_records_grant_nothing(
        &stack.ns,
        api,
        &tokens,
        |records| {
            let settings =
                portwatch_ingest::KafkaSettings::new(&format!("127.0.0.1:{BROKER_PORT}"), "portwatch.", 4);
            let written = stack.ns.within(move || -> Result<(), String> {
                use portwatch_ingest::Journal;
                let journal = portwatch_ingest::KafkaJournal::open(&settings, Duration::from_secs(10))
                    .map_err(|e| e.to_string())?;
                journal.append_decisions(&records).map_err(|e| e.to_string())
            });
            written.unwrap_or_else(|e| panic!("writing to the decisions topic: {e}"));
        },
        || stack.log("control.log"),
    );
}
