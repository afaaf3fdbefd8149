//! Notifications and tokens in the scale-out deployment, from the same code as the
//! embedded one: the control plane decides and delivers, journalling to Kafka's
//! decisions topic. Five ports of one host are one signed webhook notification; a
//! SIGKILL of the control plane and a restart send nothing more (the journal on the
//! broker says what was told); a token made with `portwatch token create --kafka`
//! works on the running control plane.

#![allow(clippy::print_stderr)]

mod support;

use std::time::Duration;

use support::receivers::{self, received, SECRET};
use support::scaleout::{stack_config, Stack, API};
use support::wait_for;

const HOOK: &str = "127.0.0.1:9999";

#[test]
fn the_control_plane_notifies_once_and_not_again_after_a_restart() {
    let stack = Stack::start(
        "so-notify",
        &stack_config(
            "high_risk_ports = \"2s\"",
            &format!(
                r#"
[alerts]
group_wait = "2s"
baseline = false

[[channels]]
name = "soc"
kind = "webhook"
url = "http://{HOOK}/hook"
secret = "{SECRET}"
"#
            ),
        ),
    );
    let hook_log = stack.path("hook.jsonl");
    let _receiver = receivers::http(&stack.ns, HOOK, &hook_log, 0);
    let ports = [22u64, 80, 3306, 6379, 8080];
    let _servers: Vec<_> = ports
        .iter()
        .map(|p| stack.ns.serve(&format!("127.0.1.5:{p}")))
        .collect();

    let mut control = stack.spawn(&["control"], "control.log");
    let _probe = stack.spawn_probe("a");
    let _projector = stack.spawn(&["project"], "project.log");

    let first = wait_for(Duration::from_secs(90), || received(&hook_log).first().cloned())
        .unwrap_or_else(|| panic!("no notification; control log:\n{}", stack.log("control.log")));
    std::thread::sleep(Duration::from_secs(6));
    let got = received(&hook_log);
    assert_eq!(got.len(), 1, "one notification for the host: {got:#?}");
    assert_eq!(first["signature_valid"], true);
    let n = receivers::body(&first)["notification"].clone();
    let mut told: Vec<u64> = n["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["port"].as_u64().expect("port"))
        .collect();
    told.sort_unstable();
    assert_eq!(told, ports);
    assert_eq!(n["ip"], "127.0.1.5");
    assert_eq!(n["zone"], "a");

    // The control plane's API shows the delivery, from the journal on the broker.
    let delivered = wait_for(Duration::from_secs(10), || {
        let alerts = stack.ns.get_json(API, "/api/v1/alerts?ip=127.0.1.5")?;
        let all = alerts.as_array()?.clone();
        all.iter()
            .filter(|a| a["kind"] == "exposure_opened")
            .all(|a| a["notifications"][0]["deliveries"][0]["outcome"] == "delivered")
            .then_some(all.len())
    })
    .expect("deliveries shown by the control plane");
    assert_eq!(delivered, ports.len());

    // A token made from the shell into the Kafka journal works on the running plane.
    let token = stack.token("ann", "operator");
    let bearer = format!("Bearer {token}");
    let me = wait_for(Duration::from_secs(15), || {
        let answer = stack.ns.http(
            "GET",
            API,
            "/api/v1/whoami",
            &[("Authorization", bearer.as_str())],
            "",
        )?;
        (answer.status == 200).then_some(answer.body)
    })
    .unwrap_or_else(|| {
        panic!(
            "the CLI's token does not work; control log:\n{}",
            stack.log("control.log")
        )
    });
    assert!(me.contains("\"operator\""), "{me}");
    let forbidden = stack
        .ns
        .http(
            "POST",
            API,
            "/api/v1/tokens",
            &[("Authorization", bearer.as_str())],
            r#"{"user":"x","role":"admin"}"#,
        )
        .expect("answer");
    assert_eq!(forbidden.status, 403, "an operator may not issue tokens");

    // SIGKILL the control plane and start it again: nothing is sent twice.
    control.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = control.0.wait();
    let _control = stack.spawn(&["control"], "control2.log");
    wait_for(Duration::from_secs(30), || {
        stack
            .log("control2.log")
            .contains("notifier resumed from the journal")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the control plane did not resume; log:\n{}",
            stack.log("control2.log")
        )
    });
    std::thread::sleep(Duration::from_secs(6));
    let got = received(&hook_log);
    assert_eq!(got.len(), 1, "the restart sent something again: {got:#?}");
    assert!(
        !stack
            .log("control2.log")
            .contains("first start: admin token issued"),
        "a restart issues no second first token"
    );
}

#[test]
fn approvals_silence_warn_and_expire_on_the_control_plane() {
    let stack = Stack::start(
        "so-approve",
        &stack_config(
            "high_risk_ports = \"2s\"\nservice_detection = \"2s\"",
            &format!(
                r#"
[alerts]
group_wait = "1s"
group_interval = "1s"
repeat_interval = "4s"
baseline = false

[approvals]
warn_before = "8s"

[[channels]]
name = "soc"
kind = "webhook"
url = "http://{HOOK}/hook"
secret = "{SECRET}"
"#
            ),
        ),
    );
    let hook_log = stack.path("hook.jsonl");
    let _receiver = receivers::http(&stack.ns, HOOK, &hook_log, 0);
    let _web = support::Proc(
        stack
            .ns
            .command("python3")
            .args(["-m", "http.server", "8080", "--bind", "127.0.1.6"])
            .current_dir(stack.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python http.server"),
    );
    let _control = stack.spawn(&["control"], "control.log");
    let _probe = stack.spawn_probe("a");
    let _projector = stack.spawn(&["project"], "project.log");
    let kinds = || -> Vec<String> {
        received(&hook_log)
            .iter()
            .map(|r| {
                receivers::body(r)["notification"]["kind"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            })
            .collect()
    };
    // The control plane creates the decisions topic on start: tokens after that.
    wait_for(Duration::from_secs(60), || {
        stack.ns.http_get(API, "/healthz").map(|_| ())
    })
    .unwrap_or_else(|| panic!("control plane not up; log:\n{}", stack.log("control.log")));
    let (operator, approver) = (stack.token("olga", "operator"), stack.token("arno", "approver"));

    // Unapproved: paged and reminded; identified as http by a probe node.
    wait_for(Duration::from_secs(90), || {
        let k = kinds();
        (k.first().map(String::as_str) == Some("firing") && k.iter().any(|k| k == "reminder")).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no firing and reminder: {:?}; control log:\n{}",
            kinds(),
            stack.log("control.log")
        )
    });
    let port = || {
        let rows = stack.ns.get_json(API, "/api/v1/ports?ip=127.0.1.6")?;
        rows.as_array()?.iter().find(|r| r["port"] == 8080).cloned()
    };
    wait_for(Duration::from_secs(60), || {
        port().filter(|r| r["service"] == "http")
    })
    .unwrap_or_else(|| panic!("never identified: {:?}", port()));

    // Filed by the operator, refused to the operator, granted by the approver.
    let (status, filed) = stack.ns.api(
        API,
        "POST",
        "/api/v1/approvals",
        &operator,
        r#"{"target":"127.0.1.6","ports":"8080","reason":"status page","owner":"web-team","expires":"20s"}"#,
    );
    assert_eq!(status, 201, "{filed}");
    let id = filed["approval_id"].as_str().expect("id").to_string();
    assert_eq!(
        stack
            .ns
            .api(
                API,
                "POST",
                &format!("/api/v1/approvals/{id}/approve"),
                &operator,
                ""
            )
            .0,
        403
    );
    let (status, granted) = stack.ns.api(
        API,
        "POST",
        &format!("/api/v1/approvals/{id}/approve"),
        &approver,
        "",
    );
    assert_eq!(status, 200, "{granted}");
    assert_eq!(
        granted["bound"][0]["service"], "http",
        "bound to what ClickHouse says it serves: {granted}"
    );
    assert_eq!(port().map(|r| r["approval"].clone()), Some(serde_json::json!(id)));
    let mark = received(&hook_log).len();

    // Silent, then warned, then reopened at the expiry.
    let after = wait_for(Duration::from_secs(60), || {
        let k = kinds()[mark..].to_vec();
        k.iter().any(|k| k == "reopened").then_some(k)
    })
    .unwrap_or_else(|| {
        panic!(
            "the expiry reopened nothing: {:?}; control log:\n{}",
            kinds(),
            stack.log("control.log")
        )
    });
    let warned = after.iter().position(|k| k == "expiring").expect("warned first");
    let reopened = after.iter().position(|k| k == "reopened").expect("reopened");
    assert!(warned < reopened, "{after:?}");
    assert!(
        after[..reopened].iter().all(|k| k != "reminder" && k != "firing"),
        "approved, so silent until it expired: {after:?}"
    );
    eprintln!("control plane notifications, in order: {:?}", kinds());
}

#[test]
fn blocks_are_confirmed_applied_verified_and_rolled_back_by_the_control_plane() {
    let stack = Stack::start(
        "so-block",
        &stack_config("high_risk_ports = \"1s\"", "\n[control]\ndry_run = false\n"),
    );
    let _redis = stack.ns.serve("127.0.1.7:6379");
    let _control = stack.spawn(&["control"], "control.log");
    let _probe = stack.spawn_probe("a");
    let _projector = stack.spawn(&["project"], "project.log");
    wait_for(Duration::from_secs(60), || {
        stack.ns.http_get(API, "/healthz").map(|_| ())
    })
    .unwrap_or_else(|| panic!("control plane not up; log:\n{}", stack.log("control.log")));
    let (operator, approver) = (stack.token("olga", "operator"), stack.token("arno", "approver"));
    // The control plane follows the journal every second: the last token made works
    // once it has read that far.
    wait_for(Duration::from_secs(15), || {
        (stack.ns.api(API, "GET", "/api/v1/whoami", &approver, "").0 == 200).then_some(())
    })
    .expect("the approver's token works");
    let open = || {
        stack
            .ns
            .get_json(API, "/api/v1/ports?ip=127.0.1.7")
            .and_then(|v| v.as_array().map(|r| r.iter().any(|r| r["port"] == 6379)))
            .unwrap_or(false)
    };
    wait_for(Duration::from_secs(60), || open().then_some(()))
        .unwrap_or_else(|| panic!("6379 never seen open; control log:\n{}", stack.log("control.log")));
    let (status, proposed) = stack.ns.api(
        API,
        "POST",
        "/api/v1/blocks",
        &operator,
        r#"{"ip":"127.0.1.7","port":6379,"reason":"Redis open to everyone","duration":"20s"}"#,
    );
    assert_eq!(status, 201, "{proposed}");
    let id = proposed["block_id"].as_str().expect("id").to_string();
    assert_eq!(
        stack
            .ns
            .api(
                API,
                "POST",
                &format!("/api/v1/blocks/{id}/confirm"),
                &operator,
                ""
            )
            .0,
        403
    );
    assert_eq!(
        stack
            .ns
            .api(
                API,
                "POST",
                &format!("/api/v1/blocks/{id}/confirm"),
                &approver,
                ""
            )
            .0,
        200
    );
    let state = || {
        let (_, blocks) = stack.ns.api(API, "GET", "/api/v1/blocks", &operator, "");
        blocks
            .as_array()
            .and_then(|b| b.iter().find(|b| b["block_id"] == id.as_str()).cloned())
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(60), || {
        (state()["state"] == "verified").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "never verified: {}; control log:\n{}",
            state(),
            stack.log("control.log")
        )
    });
    assert!(!open(), "ClickHouse has the port closed");
    wait_for(Duration::from_secs(60), || {
        (state()["state"] == "rolled_back").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "never rolled back: {}; control log:\n{}",
            state(),
            stack.log("control.log")
        )
    });
    wait_for(Duration::from_secs(60), || open().then_some(())).unwrap_or_else(|| {
        panic!(
            "6379 not seen open again; control log:\n{}",
            stack.log("control.log")
        )
    });
}
