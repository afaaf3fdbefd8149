//! Approvals end to end with the real binary, real services and a real webhook
//! receiver, in a namespace: an exposure pages (and is reminded about) until an
//! operator's request is granted by an approver (the requester may not grant it);
//! then it is silent; when the approved port closes and opens again serving Redis
//! instead of HTTP, it is identified again, the approval lapses and the finding
//! reopens; a second approval warns ahead of its
//! expiry and reopens the finding when it expires.

#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::receivers::{self, received, SECRET};
use support::{stderr, stdout, tempdir, wait_for, write_config, Netns, Proc};

const API: &str = "127.0.0.1:18093";
const HOOK: &str = "127.0.0.1:9999";
const HOST: &str = "127.0.0.8";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Kinds of the notifications received so far, in order.
fn kinds(log: &Path) -> Vec<String> {
    received(log)
        .iter()
        .map(|r| {
            receivers::body(r)["notification"]["kind"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// `portwatch approval ARGS` as the holder of `token`.
fn cli(ns: &Netns, cfg: &str, token: &str, args: &[&str]) -> std::process::Output {
    ns.command(support::bin())
        .args(["--config", cfg, "approval"])
        .args(args)
        .env("PORTWATCH_TOKEN", token)
        .output()
        .expect("portwatch approval")
}

fn port_row(ns: &Netns, token: &str) -> Option<serde_json::Value> {
    let (status, rows) = ns.api(API, "GET", &format!("/api/v1/ports?ip={HOST}"), token, "");
    (status == 200).then_some(())?;
    rows.as_array()?.iter().find(|r| r["port"] == 8080).cloned()
}

/// File an approval as `operator` and have `approver` grant it; its id.
fn approve(ns: &Netns, operator: &str, approver: &str, expires: &str) -> String {
    let body = format!(
        r#"{{"target":"{HOST}","ports":"8080","reason":"the shop's admin UI, behind SSO","owner":"web-team","expires":"{expires}"}}"#
    );
    let (status, filed) = ns.api(API, "POST", "/api/v1/approvals", operator, &body);
    assert_eq!(status, 201, "{filed}");
    let id = filed["approval_id"].as_str().expect("id").to_string();
    let (status, refused) = ns.api(
        API,
        "POST",
        &format!("/api/v1/approvals/{id}/approve"),
        operator,
        "",
    );
    assert_eq!(status, 403, "the requester may not grant it: {refused}");
    let (status, granted) = ns.api(
        API,
        "POST",
        &format!("/api/v1/approvals/{id}/approve"),
        approver,
        "",
    );
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["state"], "approved");
    id
}

#[test]
fn approvals_silence_and_lapse_when_the_service_changes_or_the_approval_expires() {
    let ns = Netns::new("approvals");
    let dir = tempdir();
    let hook_log = dir.path().join("hook.jsonl");
    let _receiver = receivers::http(&ns, HOOK, &hook_log, 0);
    // A real HTTP server on the port that will be approved.
    let mut web = Proc(
        ns.command("python3")
            .args(["-m", "http.server", "8080", "--bind", HOST])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python http.server"),
    );
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[scope]
allow_reserved = true

[[assets]]
cidr = "{HOST}/32"
owner = "web-team@example.com"

[scan]
rate = 100000
timeout = "300ms"
high_risk_ports = "8080"

[schedule]
high_risk_ports = "2s"
service_detection = "2s"

[store]
path = "{data}"

[api]
listen = "{API}"

[alerts]
group_wait = "1s"
group_interval = "1s"
repeat_interval = "4s"
baseline = false

[approvals]
warn_before = "6s"

[[channels]]
name = "soc"
kind = "webhook"
url = "http://{HOOK}/hook"
secret = "{SECRET}"
"#,
            data = data.display()
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    let (log, out) = (dir.path().join("up.log"), dir.path().join("up.out"));
    let _up = Proc(ns.spawn_portwatch_stdout(&["up", "--config", cfg], &log, &out));
    let admin = wait_for(Duration::from_secs(30), || {
        read(&out)
            .split_whitespace()
            .find(|w| w.starts_with("pwt_"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no first admin token; log:\n{}", read(&log)));
    let operator = ns.token(cfg, "olga", "operator");
    let approver = ns.token(cfg, "arno", "approver");

    // Unapproved: it pages, and is reminded about.
    wait_for(Duration::from_secs(40), || {
        let k = kinds(&hook_log);
        (k.first().map(String::as_str) == Some("firing") && k.iter().any(|k| k == "reminder")).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no firing and reminder: {:?}; log:\n{}",
            kinds(&hook_log),
            read(&log)
        )
    });
    wait_for(Duration::from_secs(30), || {
        port_row(&ns, &admin).filter(|r| r["service"] == "http")
    })
    .unwrap_or_else(|| panic!("8080 never identified as http: {:?}", port_row(&ns, &admin)));

    // Granted by someone else: silent from then on.
    let first = approve(&ns, &operator, &approver, "1h");
    assert_eq!(
        port_row(&ns, &admin).map(|r| r["approval"].clone()),
        Some(serde_json::json!(first)),
        "the port shows its approval"
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = received(&hook_log).len();
    std::thread::sleep(Duration::from_secs(10));
    let quiet = kinds(&hook_log)[before..].to_vec();
    assert!(quiet.is_empty(), "an approved exposure paged: {quiet:?}");

    // Redis replaces the web server on the approved port (it closes, then opens
    // again serving Redis): the approval lapses and the finding reopens.
    web.kill();
    wait_for(Duration::from_secs(30), || {
        port_row(&ns, &admin).is_none().then_some(())
    })
    .unwrap_or_else(|| panic!("8080 never closed; log:\n{}", read(&log)));
    let _redis = Proc(
        ns.command("redis-server")
            .args([
                "--port",
                "8080",
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)"),
    );
    let swapped = Instant::now();
    let reopened = wait_for(Duration::from_secs(60), || {
        let k = kinds(&hook_log);
        k[before..].iter().any(|k| k == "reopened").then_some(())
    });
    assert!(
        reopened.is_some(),
        "no reopened notification after Redis took the port: {:?}; row {:?}; log:\n{}",
        kinds(&hook_log),
        port_row(&ns, &admin),
        read(&log)
    );
    eprintln!(
        "Redis on the approved port reopened the finding in {:.1} s",
        swapped.elapsed().as_secs_f64()
    );
    let (_, approvals) = ns.api(API, "GET", "/api/v1/approvals", &admin, "");
    let lapsed = approvals
        .as_array()
        .expect("approvals")
        .iter()
        .find(|a| a["approval_id"] == first.as_str())
        .expect("the first approval")["lapsed"]
        .clone();
    assert!(lapsed.to_string().contains("redis"), "lapsed: {lapsed}");

    // A second approval of what it serves now, expiring soon: silent, then a
    // warning ahead of the expiry, then reopened when it expires.
    wait_for(Duration::from_secs(30), || {
        port_row(&ns, &admin).filter(|r| r["service"] == "redis")
    })
    .expect("identified as redis");
    // This one through the command line, which goes through the same API.
    let filed = cli(
        &ns,
        cfg,
        &operator,
        &[
            "request",
            "--target",
            HOST,
            "--ports",
            "8080",
            "--service",
            "redis",
            "--reason",
            "cache for the shop, firewalled upstream",
            "--owner",
            "web-team",
            "--expires",
            "16s",
        ],
    );
    assert!(filed.status.success(), "{}", stderr(&filed));
    let filed: serde_json::Value = serde_json::from_str(stdout(&filed).trim()).expect("json");
    let second = filed["approval_id"].as_str().expect("id").to_string();
    let own = cli(&ns, cfg, &operator, &["approve", &second]);
    assert_eq!(own.status.code(), Some(2), "the requester's grant is refused");
    assert!(stderr(&own).contains("403"), "{}", stderr(&own));
    let granted = cli(
        &ns,
        cfg,
        &approver,
        &["approve", &second, "--note", "short test window"],
    );
    assert!(granted.status.success(), "{}", stderr(&granted));
    assert!(stdout(&granted).contains("\"approved\""), "{}", stdout(&granted));
    let table = cli(&ns, cfg, &admin, &["list"]);
    assert!(
        stdout(&table).contains(&second) && stdout(&table).contains(&first),
        "{}",
        stdout(&table)
    );
    assert_eq!(
        port_row(&ns, &admin).map(|r| r["approval"].clone()),
        Some(serde_json::json!(second)),
        "the port shows its approval"
    );
    let mark = received(&hook_log).len();
    let expired = wait_for(Duration::from_secs(40), || {
        let k = kinds(&hook_log)[mark..].to_vec();
        k.iter().any(|k| k == "reopened").then_some(k)
    })
    .unwrap_or_else(|| {
        panic!(
            "the expiry reopened nothing: {:?}; log:\n{}",
            kinds(&hook_log),
            read(&log)
        )
    });
    let warned = expired
        .iter()
        .position(|k| k == "expiring")
        .expect("a warning before the expiry");
    let reopened = expired.iter().position(|k| k == "reopened").expect("reopened");
    assert!(warned < reopened, "{expired:?}");
    eprintln!("notifications, in order: {:?}", kinds(&hook_log));
    assert!(
        expired[..reopened]
            .iter()
            .all(|k| k != "reminder" && k != "firing"),
        "approved, so silent but for the warning until it expires: {expired:?}"
    );
}

#[test]
fn an_allow_listed_service_pages_nobody_and_is_seeded_once() {
    let ns = Netns::new("allowlist");
    let dir = tempdir();
    let hook_log = dir.path().join("hook.jsonl");
    let _receiver = receivers::http(&ns, HOOK, &hook_log, 0);
    let host = "127.0.0.9";
    let _web = Proc(
        ns.command("python3")
            .args(["-m", "http.server", "8080", "--bind", host])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python http.server"),
    );
    let allow = dir.path().join("allow.toml");
    std::fs::write(
        &allow,
        format!(
            "[[allow]]\ntarget = \"{host}\"\nports = \"8080\"\nservice = \"http\"\nreason = \"the shop's status page\"\nowner = \"web-team\"\nexpires = \"2099-01-01T00:00:00Z\"\n"
        ),
    )
    .expect("allow-list");
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[scope]
allow_reserved = true

[[assets]]
cidr = "{host}/32"

[scan]
rate = 100000
timeout = "300ms"
high_risk_ports = "8080"

[schedule]
high_risk_ports = "2s"
service_detection = "1s"

[store]
path = "{data}"

[api]
listen = "{API}"

[auth]
anonymous_read = true

[alerts]
group_wait = "6s"
baseline = false

[approvals]
allow_list = "{allow}"

[[channels]]
name = "soc"
kind = "webhook"
url = "http://{HOOK}/hook"
secret = "{SECRET}"
"#,
            data = data.display(),
            allow = allow.display()
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let mut up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log));
    let row = wait_for(Duration::from_secs(30), || {
        let rows = ns.get_json(API, &format!("/api/v1/ports?ip={host}"))?;
        rows.as_array()?
            .iter()
            .find(|r| r["port"] == 8080 && r["service"] == "http")
            .cloned()
    })
    .unwrap_or_else(|| panic!("8080 never identified; log:\n{}", read(&log)));
    assert!(
        row["approval"].as_str().is_some_and(|a| a.starts_with("al_")),
        "{row}\napprovals: {:?}\nlog:\n{}",
        ns.get_json(API, "/api/v1/approvals"),
        read(&log)
    );
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        received(&hook_log).is_empty(),
        "an allow-listed service paged: {:?}",
        kinds(&hook_log)
    );
    let approvals = ns.get_json(API, "/api/v1/approvals").expect("approvals");
    let list = approvals.as_array().expect("list");
    assert_eq!(list.len(), 1, "{approvals}");
    assert_eq!(list[0]["state"], "approved");
    assert_eq!(list[0]["requested_by"], "allow-list");
    // Started again: the same entry is not granted twice.
    assert_eq!(up.stop(), Some(0));
    let _up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &dir.path().join("up2.log")));
    let again =
        wait_for(Duration::from_secs(20), || ns.get_json(API, "/api/v1/approvals")).expect("approvals");
    assert_eq!(again.as_array().map(Vec::len), Some(1), "{again}");
}
