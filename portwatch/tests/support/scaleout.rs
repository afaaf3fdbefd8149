//! A scale-out stack for one test, inside a network namespace of its own: a real
//! ClickHouse server and a real broker, Apache Kafka 4 (KRaft, one node; or tansu
//! with `PORTWATCH_TEST_BROKER=tansu`, lighter and faster to start), installed by
//! `scripts/services.sh install` (the test command runs it) and started here on the
//! namespace's private loopback, plus the portwatch roles the test spawns. Each test
//! owns its services, so stopping ClickHouse or freezing the broker in one test does
//! not disturb the others. Everything dies with the namespace.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use portwatch_events::Event;

use super::{stderr, stdout, tempdir, wait_for, write_config, Netns, Proc};

static COMPARISONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// ClickHouse HTTP port inside the namespace.
pub const CH_PORT: u16 = 8123;
/// Broker port inside the namespace.
pub const BROKER_PORT: u16 = 9092;
/// Control plane API address inside the namespace.
pub const API: &str = "127.0.0.1:18080";

fn services_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// The broker the stacks run: `kafka` (Apache Kafka, what production runs; the
/// default) or `broker` (tansu) with `PORTWATCH_TEST_BROKER=tansu`.
pub fn broker_engine() -> &'static str {
    match std::env::var("PORTWATCH_TEST_BROKER").as_deref() {
        Ok("tansu") => "broker",
        _ => "kafka",
    }
}

/// The config every role of a test stack shares, with `extra` appended.
pub fn stack_config(schedule: &str, extra: &str) -> String {
    format!(
        r#"[node]
name = "test"

[[assets]]
cidr = "127.0.1.0/24"
zone = "a"

[[assets]]
cidr = "127.0.2.0/24"
zone = "b"

[scope]
allow_reserved = true

[scan]
rate = 100000
timeout = "300ms"
high_risk_ports = "22,80,3306,5432,6379,8080,9200,27017"

[schedule]
liveness = "off"
full_ports = "off"
port_recheck = "off"
offline_high_risk_ports = "off"
all_assets_full_ports = "off"
{schedule}

[kafka]
brokers = "127.0.0.1:{BROKER_PORT}"
partitions = 4
timeout = "5s"

[kafka.consumer]
"session.timeout.ms" = "2000"
"heartbeat.interval.ms" = "500"

[clickhouse]
url = "http://127.0.0.1:{CH_PORT}"

[projector]
batch_wait = "100ms"
checkpoint_interval = "1s"

[probe]
heartbeat = "1s"

[auth]
anonymous_read = true

[api]
listen = "{API}"
{extra}
"#
    )
}

/// One test's stack.
pub struct Stack {
    pub ns: Netns,
    pub dir: tempfile::TempDir,
    /// The config of tools and tests (on a secure stack, the Kafka super user
    /// `admin`'s).
    pub config: PathBuf,
    /// On a secure stack: the TLS material and each role's own config.
    pub secure: Option<Secure>,
    ch_pid: Option<i32>,
    broker_pid: Option<i32>,
}

/// A stack as production runs it: Apache Kafka reachable only over SASL_SSL with
/// client certificates and ACLs, ClickHouse only over HTTPS, both behind a private
/// CA made for the test.
pub struct Secure {
    /// ca.pem, server.pem/.key/.p12, client.pem/.key, other-ca.pem, `USER.pass`.
    pub tls: PathBuf,
    /// Each role's config, with its own Kafka user: control, probe, projector.
    roles: std::collections::BTreeMap<&'static str, PathBuf>,
}

/// The Kafka users of a secure stack (SCRAM-SHA-512), and what the ACLs let the
/// roles' users do: only the control plane writes decisions and jobs, only probe
/// nodes write observations.
pub const SECURE_USERS: [&str; 6] = ["broker", "admin", "control", "probe", "projector", "intruder"];

/// `(user, operation, topics)` of a secure stack's ACLs (topics under `portwatch.`);
/// every role's user may also read its consumer groups (`portwatch` prefixed).
const ACLS: [(&str, &str, &[&str]); 6] = [
    ("control", "Write", &["decisions", "jobs"]),
    ("control", "Read", &["decisions", "control", "alerts"]),
    ("probe", "Write", &["observations", "control"]),
    ("probe", "Read", &["jobs"]),
    ("projector", "Write", &["alerts", "dead-letter"]),
    ("projector", "Read", &["observations"]),
];

/// A private CA, a server certificate for 127.0.0.1 (also the broker's client
/// certificate between its own listeners), a client certificate for portwatch's
/// roles, a second CA nobody trusts, and a password file per user, in `dir`.
fn make_tls(dir: &Path) {
    // The CA and the 127.0.0.1 server certificate every TLS test uses; here also the
    // broker's client certificate between its own listeners.
    super::receivers::private_ca(dir);
    let mut script = String::from(
        r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj /CN=portwatch 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
openssl rand -hex 16 > store.pass
openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -out server.p12 -passout file:store.pass
chmod 600 *.key
"#,
    );
    for user in SECURE_USERS.iter().chain(&["controller"]) {
        script.push_str(&format!("openssl rand -hex 16 > {user}.pass\n"));
    }
    let status = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .status()
        .expect("openssl (Debian package openssl)");
    assert!(status.success(), "making the test CA failed");
}

/// `config` with `[kafka]` and `[clickhouse]` made secure for Kafka user `user`.
pub fn secure_config(config: &str, tls: &Path, user: &str) -> String {
    let t = tls.display();
    let kafka = format!(
        "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{user}\"\nsasl_password_file = \"{t}/{user}.pass\"\nssl_ca_file = \"{t}/ca.pem\"\nssl_cert_file = \"{t}/client.pem\"\nssl_key_file = \"{t}/client.key\"\n"
    );
    let plain_url = format!("url = \"http://127.0.0.1:{CH_PORT}\"");
    assert!(
        config.contains("[kafka]\n") && config.contains(&plain_url),
        "a stack_config"
    );
    config.replacen("[kafka]\n", &kafka, 1).replacen(
        &plain_url,
        &format!("url = \"https://127.0.0.1:{CH_PORT}\"\nca_file = \"{t}/ca.pem\""),
        1,
    )
}

impl Stack {
    /// A namespace with ClickHouse and the broker running, and `config` written.
    pub fn start(tag: &str, config: &str) -> Stack {
        let ns = Netns::new(tag);
        let dir = tempdir();
        // The roles' data (the first admin token's file, spools) stays in the test's
        // directory, never in the work tree.
        let config = if config.contains("[store]") {
            config.to_string()
        } else {
            format!(
                "{config}\n[store]\npath = \"{}\"\n",
                dir.path().join("data").display()
            )
        };
        let config = write_config(dir.path(), &config);
        let mut stack = Stack {
            ns,
            dir,
            config,
            secure: None,
            ch_pid: None,
            broker_pid: None,
        };
        stack.start_clickhouse();
        stack.start_broker();
        stack
    }

    /// Like [`Stack::start`], as production runs it (see [`Secure`]): Apache Kafka
    /// only (tansu has no TLS), the ACLs of [`ACLS`] in place, `config` given to
    /// each role with its own user and to tools as `admin`.
    pub fn start_secure(tag: &str, config: &str) -> Stack {
        let ns = Netns::new(tag);
        let dir = tempdir();
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).expect("tls dir");
        make_tls(&tls);
        let config = format!(
            "{config}\n[store]\npath = \"{}\"\n",
            dir.path().join("data").display()
        );
        let mut roles = std::collections::BTreeMap::new();
        for user in ["control", "probe", "projector"] {
            let path = dir.path().join(format!("{user}.toml"));
            std::fs::write(&path, secure_config(&config, &tls, user)).expect("role config");
            roles.insert(user, path);
        }
        let admin = write_config(dir.path(), &secure_config(&config, &tls, "admin"));
        let mut stack = Stack {
            ns,
            dir,
            config: admin,
            secure: Some(Secure { tls, roles }),
            ch_pid: None,
            broker_pid: None,
        };
        stack.start_clickhouse();
        stack.start_broker();
        stack.grant_acls();
        // As an operator deploys: the topics are made once, by a user who may.
        let out = stack.portwatch(&["migrate", "--topics"]);
        assert!(
            out.status.success(),
            "migrate --topics as admin: {}",
            stderr(&out)
        );
        stack
    }

    fn tls_env(&self) -> Vec<(&'static str, String)> {
        let Some(secure) = &self.secure else {
            return Vec::new();
        };
        let tls = secure.tls.display().to_string();
        let scram = SECURE_USERS
            .iter()
            .map(|u| {
                let pw = std::fs::read_to_string(secure.tls.join(format!("{u}.pass"))).expect("password");
                format!("SCRAM-SHA-512=[name={u},password={}]", pw.trim_end())
            })
            .collect::<Vec<_>>()
            .join(" ");
        vec![
            ("KAFKA_TLS_DIR", tls.clone()),
            ("CLICKHOUSE_TLS_DIR", tls),
            ("KAFKA_SCRAM", scram),
        ]
    }

    /// The ACLs of [`ACLS`], granted by `admin` with Kafka's own tool (in parallel:
    /// each is a JVM start).
    fn grant_acls(&self) {
        let dir = self.path("broker");
        let mut calls: Vec<Vec<String>> = ACLS
            .iter()
            .map(|(user, op, topics)| {
                let mut args = vec![
                    "--add".to_string(),
                    "--allow-principal".into(),
                    format!("User:{user}"),
                    "--operation".into(),
                    (*op).into(),
                ];
                for t in *topics {
                    args.extend(["--topic".to_string(), format!("portwatch.{t}")]);
                }
                args
            })
            .collect();
        let mut groups = vec!["--add".to_string()];
        for user in ["control", "probe", "projector"] {
            groups.extend(["--allow-principal".to_string(), format!("User:{user}")]);
        }
        groups.extend(
            [
                "--operation",
                "Read",
                "--group",
                "portwatch",
                "--resource-pattern-type",
                "prefixed",
            ]
            .map(String::from),
        );
        calls.push(groups);
        let children: Vec<(usize, std::process::Child)> = calls
            .iter()
            .enumerate()
            .map(|(i, args)| {
                let own = self.path(&format!("acl-{i}"));
                std::fs::create_dir_all(&own).expect("acl dir");
                std::fs::copy(dir.join("log4j2.properties"), own.join("log4j2.properties"))
                    .expect("log config");
                let mut cmd = self.ns.command("bash");
                cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh"))
                    .args(["acl", own.to_str().unwrap(), &BROKER_PORT.to_string()])
                    .args(args);
                for (k, v) in self.tls_env() {
                    cmd.env(k, v);
                }
                (i, cmd.spawn().expect("kafka.sh acl"))
            })
            .collect();
        for (i, child) in children {
            let out = child.wait_with_output().expect("acl");
            assert!(out.status.success(), "ACL {:?} failed", calls[i]);
        }
    }

    /// The config a role runs with: on a secure stack its own user's.
    fn config_for(&self, args: &[&str]) -> PathBuf {
        let Some(secure) = &self.secure else {
            return self.config.clone();
        };
        let user = match args.iter().find(|a| ["control", "probe", "project"].contains(a)) {
            Some(&"project") => "projector",
            Some(role) => role,
            None => return self.config.clone(),
        };
        secure.roles[user].clone()
    }

    fn services(&self, args: &[&str]) -> Output {
        let mut cmd = self.ns.command("bash");
        cmd.arg(services_script()).args(args);
        for (k, v) in self.tls_env() {
            cmd.env(k, v);
        }
        cmd.output().expect("run scripts/services.sh")
    }

    fn pid_of(out: &Output, what: &str) -> i32 {
        assert!(
            out.status.success(),
            "starting {what} failed (did the test command run `scripts/services.sh install`?): {}",
            stderr(out)
        );
        stdout(out).trim().parse().expect("pid")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn start_clickhouse(&mut self) {
        let dir = self.path("clickhouse");
        let out = self.services(&["clickhouse", dir.to_str().unwrap(), &CH_PORT.to_string()]);
        self.ch_pid = Some(Self::pid_of(&out, "clickhouse"));
    }

    /// Stop ClickHouse (SIGTERM, wait); its data stays for the next start.
    pub fn stop_clickhouse(&mut self) {
        if let Some(pid) = self.ch_pid.take() {
            let out = self.services(&["stop", &pid.to_string()]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }

    pub fn start_broker(&mut self) {
        let dir = self.path("broker");
        let engine = if self.secure.is_some() {
            "kafka"
        } else {
            broker_engine()
        };
        let out = self.services(&[engine, dir.to_str().unwrap(), &BROKER_PORT.to_string()]);
        self.broker_pid = Some(Self::pid_of(&out, engine));
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the broker. A frozen broker accepts no
    /// request: to clients it is down, and it comes back with everything it held.
    pub fn freeze_broker(&self, frozen: bool) {
        let pid = self.broker_pid.expect("broker running");
        let sig = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("signal broker");
    }

    /// Start a portwatch role with the stack's config; stderr goes to `log`.
    pub fn spawn(&self, args: &[&str], log: &str) -> Proc {
        let config = self.config_for(args);
        let mut full = vec!["--config", config.to_str().unwrap()];
        full.extend_from_slice(args);
        Proc(self.ns.spawn_portwatch(&full, &self.path(log)))
    }

    /// A probe node of `zone`, named `probe-{zone}`, logging to `probe-{zone}.log`.
    pub fn spawn_probe(&self, zone: &str) -> Proc {
        self.spawn_probe_named(zone, &format!("probe-{zone}"))
    }

    /// A probe node of `zone` named `name`, logging to `{name}.log`.
    pub fn spawn_probe_named(&self, zone: &str, name: &str) -> Proc {
        let data = self.path(name);
        self.spawn(
            &[
                "--data",
                data.to_str().unwrap(),
                "probe",
                "--zone",
                zone,
                "--node",
                name,
            ],
            &format!("{name}.log"),
        )
    }

    /// Like [`Stack::spawn`], with extra environment variables.
    pub fn spawn_env(&self, args: &[&str], log: &str, env: &[(&str, &str)]) -> Proc {
        let file = std::fs::File::create(self.path(log)).expect("log file");
        let mut cmd = self.ns.command(super::bin());
        cmd.arg("--config")
            .arg(self.config_for(args))
            .args(args)
            .env("PORTWATCH_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc(
            cmd.stdout(std::process::Stdio::null())
                .stderr(file)
                .spawn()
                .expect("spawn portwatch"),
        )
    }

    /// Run portwatch to completion with the stack's config.
    pub fn portwatch(&self, args: &[&str]) -> Output {
        let mut full = vec!["--config", self.config.to_str().unwrap()];
        full.extend_from_slice(args);
        self.ns.portwatch(&full)
    }

    /// A new token for `user` with `role`, made with `portwatch token create --kafka`
    /// into the stack's journal.
    pub fn token(&self, user: &str, role: &str) -> String {
        let out = self.portwatch(&["token", "create", "--kafka", "--user", user, "--role", role]);
        assert!(out.status.success(), "token create --kafka: {}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Run SQL on ClickHouse; the response body, or the error text.
    pub fn sql(&self, query: &str) -> Result<String, String> {
        let mut cmd = self.ns.command("curl");
        cmd.args([
            "-sS",
            "--fail-with-body",
            "--max-time",
            "20",
            "--data-binary",
            query,
        ]);
        match &self.secure {
            None => cmd.arg(format!("http://127.0.0.1:{CH_PORT}/?database=portwatch")),
            Some(s) => cmd
                .arg("--cacert")
                .arg(s.tls.join("ca.pem"))
                .arg(format!("https://127.0.0.1:{CH_PORT}/?database=portwatch")),
        };
        let out = cmd.output().expect("curl");
        if out.status.success() {
            Ok(stdout(&out))
        } else {
            Err(format!("{}{}", stdout(&out), stderr(&out)))
        }
    }

    /// One number from SQL.
    pub fn sql_u64(&self, query: &str) -> u64 {
        let text = self.sql(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{query}: not a number: {text:?}"))
    }

    /// The projected state in ClickHouse (`portwatch snapshot --clickhouse`).
    pub fn clickhouse_snapshot(&self) -> Option<serde_json::Value> {
        let out = self.portwatch(&["snapshot", "--clickhouse"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Every event in the observations topic (`portwatch events --kafka`), in
    /// partition then offset order.
    pub fn kafka_events(&self) -> Vec<Event> {
        let out = self.portwatch(&["events", "--kafka", "--limit", "10000000"]);
        assert!(out.status.success(), "events --kafka: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| Event::from_json(l).unwrap_or_else(|e| panic!("bad event {l}: {e}")))
            .collect()
    }

    /// The embedded mode's state for `events`: an embedded log holding exactly these
    /// events, folded by `portwatch rebuild`, read by `portwatch snapshot`.
    pub fn embedded_snapshot(&self, events: &[Event], name: &str) -> serde_json::Value {
        let data = self.path(&format!("{name}-log"));
        let log = portwatch_ingest::EmbeddedLog::open(data.join("events.db")).expect("embedded log");
        use portwatch_ingest::EventLog;
        for chunk in events.chunks(1000) {
            log.append(chunk).expect("append");
        }
        drop(log);
        let rebuilt = self.path(&format!("{name}-state"));
        let out = self.portwatch(&[
            "--data",
            data.to_str().unwrap(),
            "rebuild",
            "--to",
            rebuilt.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "rebuild: {}", stderr(&out));
        let out = self.portwatch(&["--data", rebuilt.to_str().unwrap(), "snapshot"]);
        assert!(out.status.success(), "snapshot: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("snapshot json")
    }

    /// Wait until ClickHouse holds the embedded mode's state for everything in the
    /// topic (the projectors have caught up); returns both for the final assertion.
    pub fn converged(&self, limit: Duration) -> (serde_json::Value, serde_json::Value, Vec<Event>) {
        let mut last = None;
        let found = wait_for(limit, || {
            let events = self.kafka_events();
            let ch = self.clickhouse_snapshot()?;
            let n = COMPARISONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let embedded = self.embedded_snapshot(&events, &format!("cmp{n}"));
            if ch == embedded {
                Some((ch, embedded, events))
            } else {
                last = Some((ch, embedded, events));
                std::thread::sleep(Duration::from_millis(500));
                None
            }
        });
        found.unwrap_or_else(|| last.expect("at least one comparison"))
    }

    /// Assert every raw table is free of duplicates once deduplicated, and that the
    /// observations table holds every event of the topic exactly once.
    pub fn assert_no_loss_no_duplicates(&self, events: &[Event]) {
        let ids: std::collections::BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
        let stored = self.sql_u64("SELECT count() FROM observations FINAL");
        let distinct = self.sql_u64("SELECT uniqExact(id) FROM observations FINAL");
        assert_eq!(stored, distinct, "duplicate observation rows after FINAL");
        assert_eq!(
            distinct as usize,
            ids.len(),
            "observations in ClickHouse vs distinct events in the topic"
        );
        for (table, key) in [
            ("port_state", "ip, proto, port"),
            ("episodes", "id"),
            ("hosts", "ip"),
            ("alerts", "id"),
        ] {
            let rows = self.sql_u64(&format!("SELECT count() FROM {table} FINAL"));
            let keys = self.sql_u64(&format!("SELECT uniqExact({key}) FROM {table} FINAL"));
            assert_eq!(rows, keys, "{table}: duplicate rows after FINAL");
        }
        // Merge everything and check the raw tables too: ReplacingMergeTree keeps one
        // row per key, so no second row can hide.
        for table in ["observations", "port_state", "episodes", "hosts", "alerts"] {
            self.sql(&format!("OPTIMIZE TABLE {table} FINAL"))
                .expect("optimize");
        }
        assert_eq!(self.sql_u64("SELECT count() FROM observations"), ids.len() as u64);
        assert_eq!(
            self.sql_u64("SELECT count() FROM alerts"),
            self.sql_u64("SELECT uniqExact(id) FROM alerts")
        );
    }
}

/// Expected alerts for a snapshot: one per episode opened, one per episode closed.
pub fn expected_alerts(snapshot: &serde_json::Value) -> u64 {
    let episodes = snapshot["episodes"].as_array().expect("episodes");
    let closed = episodes.iter().filter(|e| !e["closed_at"].is_null()).count();
    (episodes.len() + closed) as u64
}

/// What differs between two snapshots, briefly: per section, the rows only in one
/// of them (by their JSON), at most a few of each.
pub fn snapshot_diff(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let mut out = String::new();
    for section in ["ports", "episodes", "hosts"] {
        let rows = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
            v[section]
                .as_array()
                .map(|a| a.iter().map(|r| r.to_string()).collect())
                .unwrap_or_default()
        };
        let (ra, rb) = (rows(a), rows(b));
        for (name, only) in [("left", ra.difference(&rb)), ("right", rb.difference(&ra))] {
            for row in only.take(3) {
                out.push_str(&format!("{section} only in {name}: {row}\n"));
            }
        }
    }
    out
}
