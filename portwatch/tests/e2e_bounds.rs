//! Bounded approvals and blocks with the real binary and real nftables (dry-run off)
//! inside the test's namespace: an approval of the whole internet, of an address
//! outside the assets or of the service `unknown` is refused with 400 naming the
//! limit; a block of the API's own port, of SSH or of an address outside the assets
//! is refused at proposal; and a block of the API's own port that reaches the
//! journal some other way (written straight into it, proposer and a real second
//! person named) is refused again by the controller at apply time, journalled as
//! such, and never becomes a firewall rule: the console stays reachable.

#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{loopback_up_config, stdout, tempdir, wait_for, Netns, Proc};

const HOST: &str = "127.0.0.8";
const API_PORT: u16 = 18095;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Append decision records to the embedded journal as another writer would, sealed
/// with the key in `key_file` (a writer who holds it: a compromised portwatch).
fn write_into_journal(events_db: &Path, key_file: &Path, records: &[serde_json::Value]) {
    let key = portwatch_ledger::Key::load_or_create(key_file).expect("ledger key");
    let rows: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let d = portwatch_projections::Decision::from_json(&r.to_string()).expect("a decision");
            (d.id.clone(), portwatch_ledger::seal(&key, &d))
        })
        .collect();
    support::write_into_journal(events_db, &rows);
}

#[test]
fn approvals_and_blocks_keep_their_bounds_at_decision_and_at_apply_time() {
    let ns = Netns::new("bounds");
    let dir = tempdir();
    let api = format!("{HOST}:{API_PORT}");
    let cfg = loopback_up_config(
        dir.path(),
        &format!("[[assets]]\ncidr = \"{HOST}/32\""),
        "high_risk_ports = \"1s\"",
        &api,
        "[control]\ndry_run = false\n",
    );
    let cfg = cfg.to_str().expect("utf8").to_string();
    let log = dir.path().join("up.log");
    let _up = Proc(ns.spawn_portwatch(&["up", "--config", &cfg], &log));
    let operator = ns.token(&cfg, "olga", "operator");
    let approver = ns.token(&cfg, "arno", "approver");
    let me = wait_for(Duration::from_secs(30), || {
        ns.get_json_as(&api, "/api/v1/whoami", &approver)
    })
    .unwrap_or_else(|| panic!("up not answering; log:\n{}", read(&log)));
    let arno_token = me["token"].as_str().expect("token id").to_string();
    let olga_token = ns.get_json_as(&api, "/api/v1/whoami", &operator).expect("olga")["token"]
        .as_str()
        .expect("token id")
        .to_string();

    // Approvals.
    for (target, service, named) in [
        ("0.0.0.0/0", "https", "max_addresses"),
        ("::/0", "https", "max_addresses"),
        ("198.51.100.7", "https", "not inside the assets"),
        (HOST, "unknown", "service `unknown`"),
    ] {
        let body = format!(
            r#"{{"target":"{target}","ports":"1-65535","service":"{service}","reason":"everything","owner":"nobody","expires":"365d"}}"#
        );
        let (status, refused) = ns.api(&api, "POST", "/api/v1/approvals", &operator, &body);
        assert_eq!(status, 400, "{target} {service}: {refused}");
        assert!(
            refused["error"].as_str().is_some_and(|e| e.contains(named)),
            "{target}: {refused}"
        );
    }
    let (status, ok) = ns.api(
        &api,
        "POST",
        "/api/v1/approvals",
        &operator,
        &format!(r#"{{"target":"{HOST}","ports":"443","service":"https","reason":"shop","owner":"web","expires":"30d"}}"#),
    );
    assert_eq!(status, 201, "within the limits: {ok}");

    // Blocks, at proposal.
    for (ip, port, status_wanted, named) in [
        (HOST, API_PORT, 409, "protect"),
        (HOST, 22, 409, "protect `22`"),
        ("198.51.100.7", 6379, 400, "not inside the assets"),
    ] {
        let body = format!(r#"{{"ip":"{ip}","port":{port},"reason":"lock them out","duration":"10m"}}"#);
        let (status, refused) = ns.api(&api, "POST", "/api/v1/blocks", &operator, &body);
        assert_eq!(status, status_wanted, "{ip}:{port}: {refused}");
        assert!(
            refused["error"].as_str().is_some_and(|e| e.contains(named)),
            "{ip}:{port}: {refused}"
        );
    }

    // A block of the API's port that reached the journal anyway, proposed by an
    // operator and confirmed by a real second person with their own token, sealed
    // with the ledger's key (what only a compromised portwatch could write).
    let now = chrono::Utc::now().to_rfc3339();
    let v = portwatch_events::SCHEMA_VERSION;
    let id = "bk_0000000000forged";
    write_into_journal(
        &dir.path().join("data/events.db"),
        &dir.path().join("data/ledger.key"),
        &[
            serde_json::json!({
                "v": v, "id": format!("block:{id}"), "at": now, "by": "olga", "token": olga_token,
                "kind": "block_proposed", "block_id": id, "ip": HOST, "proto": "tcp", "port": API_PORT,
                "episode_id": "none", "reason": "lock them out", "duration_secs": 600,
            }),
            serde_json::json!({
                "v": v, "id": format!("confirmed:{id}"), "at": now, "by": "arno", "token": arno_token,
                "kind": "block_confirmed", "block_id": id,
            }),
        ],
    );
    let ended = wait_for(Duration::from_secs(30), || {
        let (_, blocks) = ns.api(&api, "GET", "/api/v1/blocks", &operator, "");
        let b = blocks.as_array()?.iter().find(|b| b["block_id"] == id)?.clone();
        (b["state"] == "rolled_back").then_some(b)
    })
    .unwrap_or_else(|| panic!("the controller did not end the block; log:\n{}", read(&log)));
    let why = ended["ending"][0].as_str().unwrap_or_default();
    assert!(
        why.starts_with("refused at apply time") && why.contains("protect"),
        "{ended}"
    );
    assert!(ended["applied"].is_null(), "never applied: {ended}");
    let set = ns.command("nft").args(["list", "ruleset"]).output().expect("nft");
    assert!(
        !stdout(&set).contains(&API_PORT.to_string()),
        "a rule for the API's port: {}",
        stdout(&set)
    );
    assert!(
        read(&log).contains("block refused at apply time"),
        "{}",
        read(&log)
    );
    // The console is still there, and the refusal is on record.
    let (status, _) = ns.api(&api, "GET", "/healthz", &operator, "");
    assert_eq!(status, 200);
    let audit = ns.portwatch(&["--config", &cfg, "audit", "--kind", "block_ending", "--json"]);
    let audit = stdout(&audit);
    assert!(
        audit
            .lines()
            .any(|l| l.contains(id) && l.contains("\"user\":\"controller\"")),
        "{audit}"
    );
}
