//! The OpenAPI contract against the running server: schemathesis (PyPI) reads the
//! document `portwatch up` serves and sends generated requests, valid and invalid, to
//! every operation with an admin's token: no answer may be a 5xx or a dropped
//! connection, every answer must match the documented status codes, content types
//! and schemas, and every operation that needs a token must refuse the request
//! without one (schemathesis' `ignored_auth` check). The fleet is a loopback
//! namespace of the test's own.

#![allow(clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{loopback_up_config, stderr, stdout, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18095";

/// A program of the tools' Python environment.
fn tool(name: &str) -> PathBuf {
    let tools = std::env::var_os("PORTWATCH_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tools")));
    let program = tools.join("venv/bin").join(name);
    assert!(
        program.exists(),
        "{} missing: the test command runs `scripts/console-tools.sh install`",
        program.display()
    );
    program
}

fn schemathesis() -> PathBuf {
    tool("st")
}

/// openapi-spec-validator (PyPI) on a document: its verdict line, or why it failed.
fn validate(document: &std::path::Path) -> Result<String, String> {
    let out = std::process::Command::new(tool("openapi-spec-validator"))
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .arg(document)
        .output()
        .expect("run openapi-spec-validator");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The committed document, and one spoiled on purpose to show that the validator
/// reads what it is given (two operations sharing an id is what it once found here).
#[test]
fn the_committed_document_validates_and_a_broken_one_does_not() {
    let committed = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi.json"));
    let verdict = validate(&committed).unwrap_or_else(|e| panic!("api/openapi.json does not validate:\n{e}"));
    assert!(verdict.contains("OK"), "{verdict}");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&committed).expect("read")).expect("json");
    doc["paths"]["/api/v1/blocks"]["get"]["operationId"] = "list_approvals".into();
    let dir = tempdir();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, doc.to_string()).expect("write");
    let refusal = validate(&broken).expect_err("a duplicate operationId is refused");
    assert!(refusal.contains("list_approvals"), "{refusal}");
}

#[test]
fn schema_driven_requests_find_no_server_error_and_no_ignored_auth() {
    let st = schemathesis();
    let ns = Netns::new("fuzz");
    let dir = tempdir();
    let cfg = loopback_up_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.0/29\"\nowner = \"web-team\"\nsystem = \"shop\"",
        "high_risk_ports = \"1s\"",
        API,
        // The fuzzer sends wrong tokens on purpose (ignored_auth); throttling them
        // would keep its valid requests from the handlers.
        "[auth]\nfailures_per_minute = 1000000",
    );
    let cfg = cfg.to_str().expect("utf8");
    let _redis = ns.serve("127.0.0.2:6379");
    let _db = ns.serve("127.0.0.3:3306");
    let admin = ns.token(cfg, "fuzz-admin", "admin");
    let log = dir.path().join("up.log");
    let mut up = Proc(ns.spawn_portwatch(&["--config", cfg, "up"], &log));
    let seen = wait_for(Duration::from_secs(30), || {
        let rows = ns.get_json_as(API, "/api/v1/ports", &admin)?;
        rows.as_array().is_some_and(|r| r.len() == 2).then_some(())
    });
    assert!(
        seen.is_some(),
        "the fleet never showed; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The document the server serves validates (OpenAPI 3.1), as served.
    let served = ns.http_get(API, "/api/v1/openapi.json").expect("the document");
    assert_eq!(served.0, 200);
    let document = dir.path().join("openapi.json");
    std::fs::write(&document, &served.1).expect("write");
    let verdict =
        validate(&document).unwrap_or_else(|e| panic!("the served document does not validate:\n{e}"));
    eprintln!("openapi-spec-validator: {}", verdict.trim());

    let junit = dir.path().join("junit.xml");
    let out = ns
        .command(st.to_str().expect("utf8"))
        .args([
            "run",
            &format!("http://{API}/api/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {admin}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth",
            "--max-examples",
            "40",
            "--seed",
            "7",
            "--workers",
            "2",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
        ])
        .arg(&junit)
        // Its cache (`.schemathesis/`) goes with the test's directory, not the tree.
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    let text = stdout(&out);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}\nportwatch log:\n{}",
        stderr(&out),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // It really ran: every operation of the document, and many requests.
    let junit = std::fs::read_to_string(&junit).expect("junit report");
    let cases = junit.matches("<testcase ").count();
    assert!(cases >= 20, "only {cases} operations tested:\n{junit}");
    assert!(
        !junit.contains("<failure") && !junit.contains("<error"),
        "{junit}"
    );
    // The server is still up and nothing it recorded is lost. (A fresh token: the
    // fuzzer may well have revoked or demoted the one it was given.)
    let auditor = ns.token(cfg, "auditor", "viewer");
    let rows = wait_for(Duration::from_secs(10), || {
        ns.get_json_as(API, "/api/v1/ports", &auditor)
    })
    .expect("the server answers after the fuzzing");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    assert_eq!(up.stop(), Some(0), "clean stop after the fuzzing");
}
