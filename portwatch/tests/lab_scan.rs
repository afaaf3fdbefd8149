//! SYN and connect modes against the namespace lab (bench/lab.sh): exactly the open
//! ports of the live hosts, in 3 consecutive runs each, and nothing on the host whose
//! firewall drops everything or on the dead addresses. The scanner runs inside the
//! lab's scanner namespace, whose only route leads to the lab.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use support::{stderr, stdout};

static N: AtomicU32 = AtomicU32::new(0);

struct Lab {
    prefix: String,
    desc: serde_json::Value,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn up() -> Lab {
        let prefix = format!(
            "l{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/lab.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", &prefix, "11"])
            .output()
            .expect("lab.sh");
        let lab = |desc| {
            let dir = support::tempdir();
            let config = support::write_config(dir.path(), "[[assets]]\ncidr = \"10.77.0.0/24\"\n");
            Lab {
                prefix: prefix.clone(),
                desc,
                config,
                _dir: dir,
            }
        };
        if !out.status.success() {
            drop(lab(serde_json::Value::Null));
            panic!("lab.sh up failed: {}", stderr(&out));
        }
        lab(serde_json::from_slice(&out.stdout).expect("lab description"))
    }

    fn hosts(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.desc["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .filter(|h| h["kind"] == kind)
            .collect()
    }

    fn expected_open(&self) -> BTreeSet<(String, u64)> {
        let mut set = BTreeSet::new();
        for h in self.desc["hosts"].as_array().expect("hosts") {
            for p in h["open"].as_array().expect("open") {
                set.insert((
                    h["ip"].as_str().expect("ip").to_string(),
                    p.as_u64().expect("port"),
                ));
            }
        }
        set
    }

    fn scan(&self, args: &[&str]) -> BTreeSet<(String, u64)> {
        self.scan_with_summary(args).0
    }

    /// Open ports found, and the summary line from stderr.
    fn scan_with_summary(&self, args: &[&str]) -> (BTreeSet<(String, u64)>, String) {
        let ns = self.desc["scanner_ns"].as_str().expect("ns");
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                support::bin(),
                "-c",
                self.config.to_str().expect("utf8"),
                "scan",
                "--json",
            ])
            .args(args)
            .output()
            .expect("portwatch");
        assert!(out.status.success(), "scan {args:?} failed: {}", stderr(&out));
        let found = stdout(&out)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                (
                    v["ip"].as_str().expect("ip").to_string(),
                    v["port"].as_u64().expect("port"),
                )
            })
            .collect();
        (found, stderr(&out))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/lab.sh");
        let _ = Command::new("bash")
            .arg(script)
            .args(["down", &self.prefix])
            .status();
    }
}

fn ips<'a>(hosts: impl IntoIterator<Item = &'a serde_json::Value>) -> Vec<String> {
    hosts
        .into_iter()
        .map(|h| h["ip"].as_str().expect("ip").to_string())
        .collect()
}

#[test]
fn syn_mode_is_exact_three_runs_in_a_row() {
    let lab = Lab::up();
    let mut targets = ips(lab
        .hosts("live")
        .into_iter()
        .chain(lab.hosts("icmp_drop"))
        .chain(lab.hosts("filtered")));
    targets.extend(
        lab.desc["dead"]
            .as_array()
            .expect("dead")
            .iter()
            .map(|d| d.as_str().expect("ip").to_string()),
    );
    let expected = lab.expected_open();
    assert_eq!(expected.len(), 25);
    for run in 1..=3 {
        let mut args: Vec<&str> = targets.iter().map(String::as_str).collect();
        args.extend(["-p", "-", "--mode", "syn", "--rate", "100000", "--timeout", "1s"]);
        let found = lab.scan(&args);
        assert_eq!(
            found,
            expected,
            "run {run}: missing {:?}, extra {:?}",
            &expected - &found,
            &found - &expected
        );
    }
}

#[test]
fn connect_mode_is_exact_three_runs_in_a_row() {
    let lab = Lab::up();
    let live = ips(lab
        .hosts("live")
        .into_iter()
        .chain(lab.hosts("icmp_drop"))
        .chain(lab.hosts("wildcard")));
    let mut silent = ips(lab.hosts("filtered"));
    silent.extend(
        lab.desc["dead"]
            .as_array()
            .expect("dead")
            .iter()
            .map(|d| d.as_str().expect("ip").to_string()),
    );
    let expected = lab.expected_open();
    for run in 1..=3 {
        let mut args: Vec<&str> = live.iter().map(String::as_str).collect();
        args.extend(["-p", "-", "--mode", "connect", "--rate", "100000"]);
        let found = lab.scan(&args);
        assert_eq!(
            found,
            expected,
            "run {run}: missing {:?}, extra {:?}",
            &expected - &found,
            &found - &expected
        );
        // Silent hosts cost a timeout per port in connect mode; a slice of the range
        // shows they yield nothing without spending minutes.
        let mut args: Vec<&str> = silent.iter().map(String::as_str).collect();
        args.extend([
            "-p",
            "1-2000",
            "--mode",
            "connect",
            "--rate",
            "100000",
            "--timeout",
            "300ms",
        ]);
        assert_eq!(
            lab.scan(&args),
            BTreeSet::new(),
            "run {run}: silent hosts reported open ports"
        );
    }
}
