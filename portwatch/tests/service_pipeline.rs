//! Tasks 3 and 5 in the embedded pipeline: `portwatch up` finds ports open, the
//! service detection task, woken by the scan, identifies them (a real Redis on an
//! unusual port, within seconds though its cadence is an hour), the
//! admin panel task finds a console on a web port, and the results are events in
//! the log and show in the API with their risk class.
//!
//! Everything runs inside this test's own namespace: redis-server (Debian, installed
//! by the test command) and a small web server of this test's own.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{tempdir, wait_for, write_config, Netns, Proc};

const API: &str = "127.0.0.1:18080";

/// A web server whose /manager/html asks for Basic auth in Tomcat's manager realm.
const FAKE_MANAGER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/manager/html":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Tomcat Manager Application"')
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><head><title>intranet</title></head></html>")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", 18088), H).serve_forever()
"#;

fn port_row(ns: &Netns, port: u16) -> Option<serde_json::Value> {
    let rows = ns.get_json(API, "/api/v1/ports?ip=127.0.0.1")?;
    rows.as_array()?.iter().find(|r| r["port"] == port).cloned()
}

#[test]
fn new_open_ports_are_identified_and_classified_through_the_pipeline() {
    let ns = Netns::new("svcup");
    let dir = tempdir();
    let _redis = Proc(
        ns.command("redis-server")
            .args([
                "--port",
                "16379",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed by the test command)"),
    );
    let _web = Proc(
        ns.command("python3")
            .args(["-c", FAKE_MANAGER])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[scope]
allow_reserved = true

[[assets]]
cidr = "127.0.0.1/32"

[scan]
rate = 100000
timeout = "500ms"

[schedule]
full_ports = "3s"
# An hour: the ports are identified within seconds only because a scan that finds
# open ports wakes the detection task.
service_detection = "1h"
admin_panels = "2s"

[service]
timeout = "500ms"

[store]
path = "{data}"

[auth]
anonymous_read = true

[api]
listen = "{API}"
"#,
            data = data.display()
        ),
    );
    let cfg = config.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let _up = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    let redis = wait_for(Duration::from_secs(60), || {
        port_row(&ns, 16379).filter(|r| r["service"] == "redis")
    })
    .unwrap_or_else(|| panic!("redis on 16379 never identified; log:\n{}", logged()));
    assert_eq!(redis["product"], "Redis");
    assert!(
        redis["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{redis}"
    );
    assert_eq!(redis["risk"], "high_risk_service", "{redis}");
    assert_eq!(redis["class"], "high_risk_service", "{redis}");

    let web = wait_for(Duration::from_secs(60), || {
        port_row(&ns, 18088).filter(|r| r["risk"] == "high_risk_admin_panel")
    })
    .unwrap_or_else(|| panic!("the manager panel was never found; log:\n{}", logged()));
    assert_eq!(web["service"], "http");
    assert_eq!(web["panels"], serde_json::json!(["tomcat-manager"]), "{web}");
    assert_eq!(web["title"], "intranet");

    // The findings are events in the log, stamped with the tasks that made them:
    // task 3 found both (and the panel at once, on the web port), task 5 then looks
    // at the web port again at its cadence.
    let details = || -> Vec<serde_json::Value> {
        let out = ns.portwatch(&["--config", cfg, "events", "--from", "0", "--limit", "100000"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == "port_detail" && e["class"].is_string())
            .collect()
    };
    let found = |task: &str, port: u64, check: &dyn Fn(&serde_json::Value) -> bool| {
        wait_for(Duration::from_secs(30), || {
            details()
                .into_iter()
                .any(|e| e["port"] == port && e["task"] == task && check(&e))
                .then_some(())
        })
        .is_some()
    };
    assert!(
        found("service_detection", 16379, &|e| e["service"] == "redis"),
        "no service_detection event for redis"
    );
    assert!(
        found("service_detection", 18088, &|e| e["panels"][0]
            == "tomcat-manager"),
        "task 3 did not run the panel rules on the new web port"
    );
    assert!(
        found("admin_panels", 18088, &|e| e["panels"][0] == "tomcat-manager"),
        "no admin_panels event for the manager"
    );
}
