//! Service and admin panel detection against real services (issue 5), installed
//! from Debian by the test command (`scripts/lab-services.sh install`) and started
//! on 127.0.0.1 inside this test's own network namespace, on their default ports and
//! on unusual ones. `portwatch scan --service` runs inside the same namespace.
//!
//! Expected versions come from the installed packages (dpkg), never from this file.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use support::{stderr, stdout, tempdir, write_config, Netns};

/// The upstream version of an installed Debian package: epoch and Debian revision
/// stripped (`1:9.2p1-2+deb12u10` -> `9.2p1`).
fn upstream(package: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !v.is_empty(),
        "{package} is not installed (the test command installs it)"
    );
    let v = v.split_once(':').map_or(v.as_str(), |(_, r)| r).to_string();
    v.split(['-', '+', '~']).next().unwrap().to_string()
}

struct Expect {
    port: u16,
    service: &'static str,
    product: Option<&'static str>,
    /// Package whose upstream version the service must report (None: the protocol
    /// does not tell it before authentication).
    version_of: Option<&'static str>,
    class: &'static str,
    panel: Option<&'static str>,
}

const fn e(
    port: u16,
    service: &'static str,
    product: Option<&'static str>,
    version_of: Option<&'static str>,
    class: &'static str,
) -> Expect {
    Expect {
        port,
        service,
        product,
        version_of,
        class,
        panel: None,
    }
}

fn expectations() -> Vec<Expect> {
    let (hp, hs, rp, panel) = (
        "high_risk_port",
        "high_risk_service",
        "risk_port",
        "high_risk_admin_panel",
    );
    vec![
        e(22, "ssh", Some("OpenSSH"), Some("openssh-server"), rp),
        e(2222, "ssh", Some("OpenSSH"), Some("openssh-server"), rp),
        e(21, "ftp", Some("vsftpd"), Some("vsftpd"), hp),
        e(2121, "ftp", Some("vsftpd"), Some("vsftpd"), hs),
        e(6379, "redis", Some("Redis"), Some("redis-server"), hp),
        e(16379, "redis", Some("Redis"), Some("redis-server"), hs),
        e(5432, "postgresql", Some("PostgreSQL"), None, hp),
        e(15432, "postgresql", Some("PostgreSQL"), None, hs),
        e(3306, "mysql", Some("MariaDB"), Some("mariadb-server"), hp),
        e(13306, "mysql", Some("MariaDB"), Some("mariadb-server"), hs),
        e(11211, "memcached", Some("memcached"), Some("memcached"), hp),
        e(21211, "memcached", Some("memcached"), Some("memcached"), hs),
        e(1883, "mqtt", Some("Mosquitto"), Some("mosquitto"), hp),
        e(11883, "mqtt", Some("Mosquitto"), Some("mosquitto"), hs),
        e(5672, "amqp", Some("RabbitMQ"), Some("rabbitmq-server"), hp),
        e(35672, "amqp", Some("RabbitMQ"), Some("rabbitmq-server"), hs),
        e(80, "http", Some("nginx"), Some("nginx"), rp),
        e(8081, "http", Some("nginx"), Some("nginx"), rp),
        e(18443, "https", Some("nginx"), Some("nginx"), rp),
        e(
            8123,
            "clickhouse",
            Some("ClickHouse"),
            Some("clickhouse-server"),
            hp,
        ),
        e(
            8124,
            "clickhouse",
            Some("ClickHouse"),
            Some("clickhouse-server"),
            hs,
        ),
        e(19092, "kafka", None, None, hs),
        Expect {
            panel: Some("tomcat-manager"),
            ..e(8080, "http", Some("Apache Tomcat"), Some("tomcat10"), panel)
        },
        Expect {
            panel: Some("rabbitmq-management"),
            ..e(15672, "http", Some("Cowboy"), None, panel)
        },
    ]
}

/// Listeners of this test that must come out as "unknown": one never says a word
/// (a tarpit), one echoes whatever it is sent (a wildcard answer), one sends the
/// same bytes to every client whatever it asks.
fn decoys(ns: &Netns) {
    type Behaviour = fn(std::net::TcpStream);
    let behaviours: [(&str, Behaviour); 3] = [
        ("127.0.0.1:40001", |c| {
            std::thread::sleep(Duration::from_secs(30));
            drop(c);
        }),
        ("127.0.0.1:40002", |mut c| {
            let mut buf = [0u8; 4096];
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 || c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }),
        ("127.0.0.1:40003", |mut c| {
            let _ = c.write_all(b"\x16\x03\x01garbage OK ready +OK\r\n\x00\xff");
            std::thread::sleep(Duration::from_secs(5));
        }),
    ];
    for (addr, behave) in behaviours {
        let listener = ns.listen(addr);
        std::thread::spawn(move || {
            for conn in listener.incoming().take(200).flatten() {
                std::thread::spawn(move || behave(conn));
            }
        });
    }
}

#[test]
fn real_services_are_named_versioned_and_classified_on_any_port() {
    let ns = Netns::new("svc");
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let lab = dir.path().join("lab");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lab-services.sh");
    // The services it starts outlive it: its output goes to a file, not a pipe
    // (a pipe would stay open as long as they run).
    let log = dir.path().join("lab-start.log");
    let status = ns
        .command(script)
        .args(["start", lab.to_str().unwrap()])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "lab services did not start:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    decoys(&ns);

    let expect = expectations();
    let ports: Vec<String> = expect
        .iter()
        .map(|e| e.port.to_string())
        .chain(["40001", "40002", "40003"].map(String::from))
        .collect();
    let config = write_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.1/32\"\n[scope]\nallow_reserved = true\n",
    );
    let out = ns.portwatch(&[
        "-c",
        config.to_str().unwrap(),
        "scan",
        "127.0.0.1",
        "-p",
        &ports.join(","),
        "--mode",
        "connect",
        "--service",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let found: BTreeMap<u16, serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["port"].as_u64().unwrap() as u16, v))
        .collect();
    eprintln!("{}", stdout(&out));

    let mut wrong = Vec::new();
    for e in &expect {
        let Some(got) = found.get(&e.port) else {
            wrong.push(format!("{}: not reported open", e.port));
            continue;
        };
        let version = e.version_of.map(upstream);
        let checks = [
            (
                "service",
                Some(e.service.to_string()),
                got["service"].as_str().map(String::from),
            ),
            (
                "product",
                e.product.map(String::from),
                got["product"].as_str().map(String::from),
            ),
            (
                "version",
                version.clone(),
                got["version"].as_str().map(String::from),
            ),
            (
                "class",
                Some(e.class.to_string()),
                got["class"].as_str().map(String::from),
            ),
        ];
        for (what, want, have) in checks {
            // A version is checked where the protocol tells it; elsewhere none is made up.
            if what == "version" && want.is_none() {
                continue;
            }
            if want != have {
                wrong.push(format!("{}: {what} {want:?}, got {have:?}", e.port));
            }
        }
        if let Some(panel) = e.panel {
            let ids: Vec<&str> = got["panels"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
                .unwrap_or_default();
            if !ids.contains(&panel) {
                wrong.push(format!("{}: panel {panel} not found (got {ids:?})", e.port));
            }
        }
    }
    assert!(wrong.is_empty(), "misidentified:\n{}", wrong.join("\n"));

    // TLS: the certificate the lab generated is read.
    let tls = &found[&18443]["tls"];
    assert!(
        tls["cert"]["subject"]
            .as_str()
            .unwrap()
            .contains("lab.portwatch.test"),
        "{tls}"
    );
    assert!(tls["cert"]["sans"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "127.0.0.1"));
    assert_eq!(tls["cert"]["self_signed"], true);
    // The web fingerprint of the nginx root.
    assert_eq!(found[&80]["http"]["title"], "lab");
    // `risk` says the class too, as in plain `scan --json`.
    assert!(found.values().all(|v| v["risk"] == v["class"]));

    // Silent, echoing and canned-answer ports are unknown, each with a reason.
    for port in [40001u16, 40002, 40003] {
        let got = &found[&port];
        assert_eq!(got["service"], "unknown", "{port}: {got}");
        assert!(
            got["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{port}: {got}"
        );
        assert_eq!(got["class"], "risk_port");
    }
}
