//! Active control end to end with the real binary and real nftables, inside the
//! test's namespace: a block proposed by an operator and confirmed by a different
//! user (the proposer's own confirmation is refused) is applied as an nftables set
//! element, the probes see the port closed and the block is recorded as verified;
//! when its time is up the rule is removed, the block is rolled back and the port is
//! seen open again. With the default dry-run, a confirmed block is rendered and
//! checked (`nft -c`) but nothing is applied.

#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{loopback_up_config, stderr, stdout, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18094";
const HOST: &str = "127.0.0.8";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn open(ns: &Netns, token: &str) -> bool {
    let bearer = format!("Bearer {token}");
    let path = format!("/api/v1/ports?ip={HOST}");
    // Not answering yet (starting) counts as not seen open.
    let Some(answer) = ns.http("GET", API, &path, &[("Authorization", bearer.as_str())], "") else {
        return false;
    };
    let rows: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    answer.status == 200
        && rows
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["port"] == 6379))
}

fn nft_set(ns: &Netns) -> String {
    let out = ns
        .command("nft")
        .args(["list", "set", "inet", "portwatch", "blocked4"])
        .output()
        .expect("nft");
    format!("{}{}", stdout(&out), stderr(&out))
}

/// A fleet of one Redis port, `up` with `control` settings, and two users' tokens.
fn start(tag: &str, control: &str) -> (Netns, tempfile::TempDir, Proc, String, String, std::path::PathBuf) {
    let ns = Netns::new(tag);
    let dir = tempdir();
    let cfg = loopback_up_config(
        dir.path(),
        &format!("[[assets]]\ncidr = \"{HOST}/32\""),
        "high_risk_ports = \"1s\"",
        API,
        &format!("[auth]\nanonymous_read = true\n\n{control}"),
    );
    let cfg = cfg.to_str().expect("utf8").to_string();
    let log = dir.path().join("up.log");
    let up = Proc(ns.spawn_portwatch(&["up", "--config", &cfg], &log));
    let operator = ns.token(&cfg, "olga", "operator");
    let approver = ns.token(&cfg, "arno", "approver");
    (ns, dir, up, operator, approver, log)
}

fn propose_and_confirm(ns: &Netns, operator: &str, approver: &str, duration: &str) -> String {
    let body =
        format!(r#"{{"ip":"{HOST}","port":6379,"reason":"Redis open to everyone","duration":"{duration}"}}"#);
    // The second person must be another person: an approver may propose, but not
    // confirm their own proposal. (Rolled back at once, so it never applies.)
    let (status, own) = ns.api(API, "POST", "/api/v1/blocks", approver, &body);
    assert_eq!(status, 201, "{own}");
    let own = own["block_id"].as_str().expect("id").to_string();
    let (status, refused) = ns.api(
        API,
        "POST",
        &format!("/api/v1/blocks/{own}/confirm"),
        approver,
        "",
    );
    assert_eq!(status, 403, "the proposer confirmed their own block: {refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("someone else")),
        "{refused}"
    );
    let (status, ended) = ns.api(
        API,
        "POST",
        &format!("/api/v1/blocks/{own}/rollback"),
        approver,
        "",
    );
    assert_eq!(status, 200, "{ended}");
    // Never applied, so nothing to remove: it ends without the driver; until then the
    // port has a block and a second one is refused.
    wait_for(Duration::from_secs(15), || {
        (block(ns, operator, &own)["state"] == "rolled_back").then_some(())
    })
    .unwrap_or_else(|| panic!("the unapplied block never ended: {}", block(ns, operator, &own)));
    let (status, proposed) = ns.api(API, "POST", "/api/v1/blocks", operator, &body);
    assert_eq!(status, 201, "{proposed}");
    assert_eq!(proposed["state"], "proposed");
    let id = proposed["block_id"].as_str().expect("id").to_string();
    let (status, refused) = ns.api(API, "POST", &format!("/api/v1/blocks/{id}/confirm"), operator, "");
    assert_eq!(
        status, 403,
        "an operator (and the proposer) may not confirm: {refused}"
    );
    let (status, confirmed) = ns.api(API, "POST", &format!("/api/v1/blocks/{id}/confirm"), approver, "");
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["confirmed_by"], "arno");
    id
}

fn block(ns: &Netns, token: &str, id: &str) -> serde_json::Value {
    let (_, blocks) = ns.api(API, "GET", "/api/v1/blocks", token, "");
    blocks
        .as_array()
        .and_then(|b| b.iter().find(|b| b["block_id"] == id).cloned())
        .unwrap_or_default()
}

#[test]
fn a_confirmed_block_closes_the_port_is_verified_and_rolls_back_on_its_own() {
    let (ns, dir, _up, operator, approver, log) = start("blocks", "[control]\ndry_run = false\n");
    let _redis = ns.serve(&format!("{HOST}:6379"));
    wait_for(Duration::from_secs(30), || open(&ns, &operator).then_some(()))
        .unwrap_or_else(|| panic!("6379 never seen open; log:\n{}", read(&log)));
    // Nothing to block where nothing is open.
    let (status, _) = ns.api(
        API,
        "POST",
        "/api/v1/blocks",
        &operator,
        &format!(r#"{{"ip":"{HOST}","port":6380,"reason":"x","duration":"1m"}}"#),
    );
    assert_eq!(status, 409);

    let confirmed = Instant::now();
    let id = propose_and_confirm(&ns, &operator, &approver, "20s");
    let verified = wait_for(Duration::from_secs(40), || {
        let b = block(&ns, &operator, &id);
        (b["state"] == "verified").then_some(b)
    })
    .unwrap_or_else(|| {
        panic!(
            "never verified: {}; log:\n{}",
            block(&ns, &operator, &id),
            read(&log)
        )
    });
    eprintln!(
        "confirmed -> port seen closed in {:.1} s",
        confirmed.elapsed().as_secs_f64()
    );
    assert_eq!(verified["applied"]["dry_run"], false);
    let set = nft_set(&ns);
    assert!(
        set.contains(&format!("{HOST} . tcp . 6379")),
        "the rule is in force: {set}"
    );
    assert!(!open(&ns, &operator), "the port is closed in state");

    // Its time is up: the rule goes, the port is seen open again.
    wait_for(Duration::from_secs(40), || {
        (block(&ns, &operator, &id)["state"] == "rolled_back").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "never rolled back: {}; log:\n{}",
            block(&ns, &operator, &id),
            read(&log)
        )
    });
    let set = nft_set(&ns);
    assert!(!set.contains("6379"), "the rule is gone: {set}");
    wait_for(Duration::from_secs(30), || open(&ns, &operator).then_some(()))
        .unwrap_or_else(|| panic!("6379 not seen open again; log:\n{}", read(&log)));
    assert_eq!(block(&ns, &operator, &id)["ending"][0], "expired");

    // The report counts the blocked exposure as remediated, the reopened one as open
    // (its figures may be a few seconds old: FIGURES_MAX_AGE).
    let group = || {
        let (status, report) = ns.api(API, "GET", "/api/v1/report?by=risk&days=1", &operator, "");
        assert_eq!(status, 200, "{report}");
        report["groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["key"] == "high_risk_port").cloned())
            .unwrap_or_else(|| panic!("no high_risk_port group: {report}"))
    };
    let group = wait_for(Duration::from_secs(15), || {
        let g = group();
        (g["episodes"] == 2).then_some(g)
    })
    .unwrap_or_else(group);
    assert_eq!(group["episodes"], 2, "{group}");
    assert_eq!(group["open"], 1, "{group}");
    assert!(group["mttr_p50_secs"].as_i64().is_some_and(|s| s >= 0), "{group}");
    let cfg = dir.path().join("portwatch.toml");
    let out = ns.portwatch(&["--config", cfg.to_str().expect("utf8"), "report", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().expect("a line")).expect("json");
    assert_eq!(first["key"], "high_risk_port");
    assert_eq!(
        first["episodes"], group["episodes"],
        "the shell and the API agree"
    );
}

#[test]
fn by_default_a_confirmed_block_is_only_rendered_and_checked() {
    let (ns, _dir, _up, operator, approver, log) = start("blocksdry", "");
    let _redis = ns.serve(&format!("{HOST}:6379"));
    wait_for(Duration::from_secs(30), || open(&ns, &operator).then_some(()))
        .unwrap_or_else(|| panic!("6379 never seen open; log:\n{}", read(&log)));
    let id = propose_and_confirm(&ns, &operator, &approver, "10m");
    let b = wait_for(Duration::from_secs(20), || {
        let b = block(&ns, &operator, &id);
        (b["state"] == "dry_run").then_some(b)
    })
    .unwrap_or_else(|| {
        panic!(
            "not dry-run: {}; log:\n{}",
            block(&ns, &operator, &id),
            read(&log)
        )
    });
    let rules = b["applied"]["rules"].as_str().expect("rules");
    assert!(
        rules.contains(&format!(
            "add element inet portwatch blocked4 {{ {HOST} . tcp . 6379 timeout 600s }}"
        )),
        "{rules}"
    );
    assert!(
        nft_set(&ns).contains("No such file"),
        "nothing applied: {}",
        nft_set(&ns)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(open(&ns, &operator), "the port stays open");
    // An operator may end it before its time.
    let (status, ending) = ns.api(
        API,
        "POST",
        &format!("/api/v1/blocks/{id}/rollback"),
        &operator,
        "",
    );
    assert_eq!(status, 200, "{ending}");
    wait_for(Duration::from_secs(10), || {
        (block(&ns, &operator, &id)["state"] == "rolled_back").then_some(())
    })
    .expect("rolled back");
}

#[test]
fn the_command_and_http_drivers_are_called_to_block_and_to_unblock() {
    // Command: a script that writes down how it was called.
    let scratch = tempdir();
    let calls = scratch.path().join("calls.txt");
    let script = scratch.path().join("firewall.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .expect("script");
    let control = format!(
        "[control]\ndry_run = false\ndriver = \"command\"\ncommand = [\"/bin/sh\", \"{}\", \"{{action}}\", \"{{ip}}\", \"{{proto}}\", \"{{port}}\", \"{{seconds}}\"]\n",
        script.display()
    );
    let (ns, _dir, _up, operator, approver, log) = start("blockscmd", &control);
    let _redis = ns.serve(&format!("{HOST}:6379"));
    wait_for(Duration::from_secs(30), || open(&ns, &operator).then_some(()))
        .unwrap_or_else(|| panic!("6379 never seen open; log:\n{}", read(&log)));
    let id = propose_and_confirm(&ns, &operator, &approver, "6s");
    wait_for(Duration::from_secs(30), || {
        (block(&ns, &operator, &id)["state"] == "rolled_back").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "never rolled back: {}; log:\n{}",
            block(&ns, &operator, &id),
            read(&log)
        )
    });
    assert_eq!(
        read(&calls),
        format!("block {HOST} tcp 6379 6\nunblock {HOST} tcp 6379 6\n"),
        "the command was run to block, then to unblock"
    );
    drop(ns);

    // HTTP: a real HTTP server in the namespace takes the two requests.
    let hook = scratch.path().join("fw.jsonl");
    let (ns, _dir, _up, operator, approver, log) = start(
        "blockshttp",
        "[control]\ndry_run = false\ndriver = \"http\"\nurl = \"http://127.0.0.1:9999/fw\"\n",
    );
    let _fw = support::receivers::http(&ns, "127.0.0.1:9999", &hook, 0);
    let _redis = ns.serve(&format!("{HOST}:6379"));
    wait_for(Duration::from_secs(30), || open(&ns, &operator).then_some(()))
        .unwrap_or_else(|| panic!("6379 never seen open; log:\n{}", read(&log)));
    let id = propose_and_confirm(&ns, &operator, &approver, "6s");
    wait_for(Duration::from_secs(30), || {
        (block(&ns, &operator, &id)["state"] == "rolled_back").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "never rolled back: {}; log:\n{}",
            block(&ns, &operator, &id),
            read(&log)
        )
    });
    let got = support::receivers::received(&hook);
    let actions: Vec<serde_json::Value> = got.iter().map(support::receivers::body).collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0]["action"], "block");
    assert_eq!(actions[0]["ip"], HOST);
    assert_eq!(actions[0]["port"], 6379);
    assert_eq!(actions[0]["block_id"], id.as_str());
    assert_eq!(actions[1]["action"], "unblock");
}
