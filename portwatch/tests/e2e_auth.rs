//! Identities and roles with the real binary: the first start prints the admin's
//! token once (and never logs it); every operation the OpenAPI document lists is
//! refused with 401 without a token and 403 with the role just below the one it
//! names (`x-portwatch-role`), and allowed with that role; a token made with
//! `portwatch token create` while `up` runs works at once; a restart keeps the
//! tokens and prints nothing.

#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{tempdir, wait_for, write_config, Netns, Proc};

const API: &str = "127.0.0.1:18092";
const ROLES: [&str; 4] = ["viewer", "operator", "approver", "admin"];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn token_in(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.starts_with("pwt_"))
        .map(str::to_string)
}

fn status(ns: &Netns, method: &str, path: &str, token: Option<&str>, body: &str) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    ns.http(method, API, path, &headers, body)
        .unwrap_or_else(|| panic!("{method} {path}: no answer"))
        .status
}

#[test]
fn every_route_refuses_the_unauthenticated_and_the_wrong_role() {
    let ns = Netns::new("auth");
    let dir = tempdir();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            // Forged tokens on every route from one address, on purpose: the
            // throttle (e2e_api_limits) would answer 429 to the rest.
            "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.9/32\"\n[store]\npath = \"{}\"\n[api]\nlisten = \"{API}\"\n[auth]\nfailures_per_minute = 1000000\n",
            data.display()
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    let (log1, out1) = (dir.path().join("up1.log"), dir.path().join("up1.out"));
    let mut up = Proc(ns.spawn_portwatch_stdout(&["up", "--config", cfg], &log1, &out1));
    let admin = wait_for(Duration::from_secs(30), || token_in(&read(&out1)))
        .unwrap_or_else(|| panic!("no first admin token on stdout; log:\n{}", read(&log1)));
    wait_for(Duration::from_secs(10), || {
        ns.http_get(API, "/healthz").map(|_| ())
    })
    .expect("api up");

    // One token per role, made from the shell while `up` runs: each works at the
    // server's very next request (it reads the journal for an id it does not know).
    let mut tokens = vec![];
    for role in ROLES {
        let token = ns.token(cfg, &format!("{role}-user"), role);
        let bearer = format!("Bearer {token}");
        let answer = ns
            .http(
                "GET",
                API,
                "/api/v1/whoami",
                &[("Authorization", bearer.as_str())],
                "",
            )
            .expect("an answer");
        assert_eq!(
            answer.status,
            200,
            "a token made by the CLI does not work at the next request: {}; log:\n{}",
            answer.body,
            read(&log1)
        );
        assert!(
            answer.body.contains(&format!("\"{role}-user\"")),
            "{}",
            answer.body
        );
        tokens.push(token);
    }

    // Enumerate every documented operation.
    let doc = ns
        .get_json(API, "/api/v1/openapi.json")
        .expect("openapi (public)");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            let method = method.to_uppercase();
            let uri = path.replace("{id}", "0123456789abcdef");
            let body = if method == "POST" {
                r#"{"user":"probe","role":"viewer"}"#
            } else {
                ""
            };
            let Some(role) = op["x-portwatch-role"].as_str() else {
                assert!(
                    [
                        "/healthz",
                        "/metrics",
                        "/api/v1/openapi.json",
                        "/api/v1/docs",
                        "/api/v1/session"
                    ]
                    .contains(&path.as_str()),
                    "{method} {path} names no role"
                );
                if path == "/api/v1/session" {
                    // Signing in and out: anyone may try (the session tests cover it).
                    continue;
                }
                assert_eq!(
                    status(&ns, &method, &uri, None, body),
                    200,
                    "{method} {path} is public"
                );
                continue;
            };
            let need = ROLES.iter().position(|r| *r == role).expect("known role");
            assert_eq!(
                status(&ns, &method, &uri, None, body),
                401,
                "{method} {path} without a token"
            );
            assert_eq!(
                status(&ns, &method, &uri, Some("pwt_0123456789abcdef_nope"), body),
                401,
                "{method} {path} with a forged token"
            );
            if need > 0 {
                let below = &tokens[need - 1];
                assert_eq!(
                    status(&ns, &method, &uri, Some(below), body),
                    403,
                    "{method} {path} as {}",
                    ROLES[need - 1]
                );
            }
            let allowed = status(&ns, &method, &uri, Some(&tokens[need]), body);
            assert!(
                ![401, 403].contains(&allowed),
                "{method} {path} as {role}: {allowed}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} operations checked");
    eprintln!("{checked} operations checked for 401/403");

    // The token never reaches the log; a restart keeps every token and prints none.
    assert!(!read(&log1).contains(&admin), "the admin token was logged");
    for t in &tokens {
        assert!(!read(&log1).contains(t.as_str()));
    }
    assert_eq!(up.stop(), Some(0));
    let (log2, out2) = (dir.path().join("up2.log"), dir.path().join("up2.out"));
    let _up = Proc(ns.spawn_portwatch_stdout(&["up", "--config", cfg], &log2, &out2));
    let bearer = format!("Bearer {admin}");
    wait_for(Duration::from_secs(30), || {
        let answer = ns.http(
            "GET",
            API,
            "/api/v1/whoami",
            &[("Authorization", bearer.as_str())],
            "",
        )?;
        (answer.status == 200).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the admin token does not work after a restart; log:\n{}",
            read(&log2)
        )
    });
    assert!(
        token_in(&read(&out2)).is_none(),
        "a second first token: {}",
        read(&out2)
    );
}
