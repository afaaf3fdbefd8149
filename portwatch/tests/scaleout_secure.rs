//! The scale-out deployment's servers as production runs them, tried from the
//! wrong side: Apache Kafka only over SASL_SSL with client certificates and ACLs,
//! ClickHouse only over HTTPS, both behind a private CA made for the test.
//!
//! - a role with a wrong password, a CA that did not sign the broker's certificate,
//!   or no TLS at all is refused at once with an error that says which (never a
//!   silent retry loop);
//! - the ACLs hold for portwatch's own clients: the probe nodes' user may write
//!   observations but not decisions, the projectors' user may not write
//!   observations, a user without ACLs sees no topic;
//! - ClickHouse refuses a client that does not trust its CA, and plain HTTP.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::scaleout::{secure_config, stack_config, Stack, BROKER_PORT};

/// Run `args` with `config` (a file in the stack's directory named `name`) and wait
/// (bounded) for it to end; its exit code and stderr.
fn run_until_exit(stack: &Stack, name: &str, config: &str, args: &[&str]) -> (Option<i32>, String) {
    let path = stack.path(name);
    std::fs::write(&path, config).unwrap();
    let mut full = vec!["--config", path.to_str().unwrap()];
    full.extend_from_slice(args);
    let log = stack.path(&format!("{name}.log"));
    let mut child = stack.ns.spawn_portwatch(&full, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(log).unwrap_or_default())
}

fn base() -> String {
    format!(
        "{}\n[store]\npath = \"/nonexistent-unused\"\n",
        stack_config("high_risk_ports = \"off\"", "")
    )
}

/// The settings of Kafka user `user` as the roles build them from their config.
fn kafka_as(tls: &Path, user: &str) -> portwatch_ingest::KafkaSettings {
    let mut settings =
        portwatch_ingest::KafkaSettings::new(&format!("127.0.0.1:{BROKER_PORT}"), "portwatch.", 4);
    let password = std::fs::read_to_string(tls.join(format!("{user}.pass"))).unwrap();
    settings.security = portwatch_ingest::Security {
        protocol: portwatch_ingest::Protocol::SaslSsl,
        sasl: Some(portwatch_ingest::Sasl {
            mechanism: portwatch_ingest::Mechanism::ScramSha512,
            username: user.to_string(),
            password: password.trim_end().to_string(),
        }),
        ca_file: Some(tls.join("ca.pem")),
        cert_file: Some(tls.join("client.pem")),
        key_file: Some(tls.join("client.key")),
    };
    settings
}

#[test]
fn wrong_credentials_trust_or_protocol_are_refused_by_name_and_acls_hold() {
    let stack = Stack::start_secure("so-sec", &stack_config("high_risk_ports = \"off\"", ""));
    let tls = stack.secure.as_ref().unwrap().tls.clone();

    // The probe nodes' config; each case below changes one thing in it. As it is,
    // it reaches ClickHouse over HTTPS.
    let good = secure_config(&base(), &tls, "probe");
    let (code, log) = run_until_exit(&stack, "good-probe.toml", &good, &["migrate"]);
    assert_eq!(code, Some(0), "{log}");

    // A wrong password.
    std::fs::write(stack.path("wrong.pass"), "not-the-password\n").unwrap();
    let wrong = good.replace(
        &format!("{}/probe.pass", tls.display()),
        &stack.path("wrong.pass").display().to_string(),
    );
    let (code, log) = run_until_exit(&stack, "wrong-password.toml", &wrong, &["probe", "--zone", "a"]);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        code.is_some(),
        "a wrong password must end the role, not retry forever:\n{log}"
    );
    assert!(
        log.contains("refused the SASL credentials of user \"probe\""),
        "the error names the credentials:\n{log}"
    );
    assert!(
        !log.contains("not-the-password"),
        "the password is never logged:\n{log}"
    );

    // A CA that did not sign the broker's certificate.
    let untrusted = good.replace(
        &format!("ssl_ca_file = \"{}/ca.pem\"", tls.display()),
        &format!("ssl_ca_file = \"{}/other-ca.pem\"", tls.display()),
    );
    assert_ne!(untrusted, good);
    let (code, log) = run_until_exit(&stack, "untrusted.toml", &untrusted, &["probe", "--zone", "a"]);
    assert!(code.is_some_and(|c| c != 0), "{log}");
    assert!(
        log.contains("TLS certificate is not signed by a CA this client trusts"),
        "the error names the trust:\n{log}"
    );

    // No TLS, no SASL: the plaintext client meets a TLS listener.
    let plaintext = base();
    let (code, log) = run_until_exit(
        &stack,
        "plaintext.toml",
        &plaintext.replace(
            "url = \"http://127.0.0.1:8123\"",
            &format!(
                "url = \"https://127.0.0.1:8123\"\nca_file = \"{}/ca.pem\"",
                tls.display()
            ),
        ),
        &["probe", "--zone", "a"],
    );
    assert!(code.is_some_and(|c| c != 0), "{log}");
    assert!(
        log.contains("expects another security protocol than kafka.security_protocol = PLAINTEXT"),
        "the error names the protocol:\n{log}"
    );

    // ClickHouse: plain HTTP finds no listener, another CA is not trusted.
    let (code, log) = run_until_exit(
        &stack,
        "ch-untrusted.toml",
        &good.replace(
            &format!("ca_file = \"{}/ca.pem\"", tls.display()),
            &format!("ca_file = \"{}/other-ca.pem\"", tls.display()),
        ),
        &["migrate"],
    );
    assert!(code.is_some_and(|c| c != 0), "{log}");
    assert!(
        log.to_lowercase().contains("certificate"),
        "the error names the certificate:\n{log}"
    );

    // The ACLs, for portwatch's own clients.
    let events = vec![support::liveness_event(
        "n",
        std::net::IpAddr::from([127, 0, 1, 9]),
        false,
    )];
    let produce = |user: &str, topic: &'static str| {
        let (settings, events) = (kafka_as(&tls, user), events.clone());
        stack.ns.within(move || {
            let producer: rdkafka::producer::FutureProducer = settings
                .producer_config(Duration::from_secs(10))
                .create()
                .unwrap();
            let topic = format!("portwatch.{topic}");
            futures::executor::block_on(portwatch_ingest::kafka::produce_events(
                &producer, &topic, &events,
            ))
            .map_err(|e| e.to_string())
        })
    };
    let denied = || -> String {
        std::fs::read_to_string(stack.path("broker/server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Denied") || l.contains("uthoriz") || l.contains("ERROR"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let wrote = produce("probe", "observations");
    assert_eq!(
        wrote,
        Ok(()),
        "probe nodes write observations; the broker says:\n{}",
        denied()
    );
    let refused = produce("projector", "observations").expect_err("projectors may not write observations");
    assert!(
        refused.contains("TopicAuthorizationFailed") || refused.contains("authorization"),
        "{refused}"
    );
    let refused = produce("probe", "decisions").expect_err("probe nodes may not write decisions");
    assert!(
        refused.contains("TopicAuthorizationFailed") || refused.contains("authorization"),
        "{refused}"
    );
    // The journal: only the control plane's user (and the operator's admin) opens it.
    let journal = |user: &str| {
        let settings = kafka_as(&tls, user);
        stack.ns.within(move || {
            portwatch_ingest::KafkaJournal::open(&settings, Duration::from_secs(10))
                .map(drop)
                .map_err(|e| e.to_string())
        })
    };
    assert_eq!(journal("control"), Ok(()));
    let refused = journal("intruder").expect_err("a user without ACLs");
    assert!(refused.contains("may not use it"), "{refused}");
}
