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
            let config = support::write_config(
                dir.path(),
                "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"10.77.0.0/24\"\n[[assets]]\ncidr = \"fd77::/64\"\n",
            );
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

    /// The lab's dead addresses (nobody there).
    fn dead(&self) -> Vec<String> {
        self.desc["dead"]
            .as_array()
            .expect("dead")
            .iter()
            .map(|d| d.as_str().expect("ip").to_string())
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

    /// Run portwatch in the scanner namespace with `config` and `args`.
    fn run(&self, config: &std::path::Path, args: &[&str]) -> std::process::Output {
        let ns = self.desc["scanner_ns"].as_str().expect("ns");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                support::bin(),
                "-c",
                config.to_str().expect("utf8"),
            ])
            .args(args)
            .output()
            .expect("portwatch")
    }

    fn scan(&self, args: &[&str]) -> BTreeSet<(String, u64)> {
        self.scan_with_summary(args).found
    }

    /// Open ports found, and the summary line from stderr.
    fn scan_with_summary(&self, args: &[&str]) -> Scanned {
        let out = self.run(&self.config, &[&["scan", "--json"], args].concat());
        assert!(out.status.success(), "scan {args:?} failed: {}", stderr(&out));
        Scanned {
            found: support::open_ports(&out),
            summary: stderr(&out),
            unverified: support::unverified_hosts(&out),
        }
    }

    /// The one JSON line the scan printed about the wildcard host.
    fn assert_wildcard_line(&self, scanned: &Scanned) {
        let wildcard = self.hosts("wildcard")[0]["ip"].as_str().expect("ip").to_string();
        assert_eq!(scanned.unverified.len(), 1, "{:?}", scanned.unverified);
        let line = &scanned.unverified[0];
        assert_eq!(line["ip"], wildcard.as_str(), "{line}");
        assert_eq!(line["reason"], "wildcard", "{line}");
        assert!(line["unverified"].as_u64().unwrap_or(0) > 0, "{line}");
    }
}

/// What `scan --json` printed: open ports, the unverified-host lines, the summary.
struct Scanned {
    found: BTreeSet<(String, u64)>,
    summary: String,
    unverified: Vec<serde_json::Value>,
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
        .chain(lab.hosts("filtered"))
        .chain(lab.hosts("wildcard")));
    targets.extend(lab.dead());
    let expected = lab.expected_open();
    assert_eq!(expected.len(), 25);
    for run in 1..=3 {
        let mut args: Vec<&str> = targets.iter().map(String::as_str).collect();
        args.extend(["-p", "-", "--mode", "syn", "--rate", "100000", "--timeout", "1s"]);
        let scanned = lab.scan_with_summary(&args);
        lab.assert_wildcard_line(&scanned);
        let Scanned { found, summary, .. } = scanned;
        assert_eq!(
            found,
            expected,
            "run {run}: missing {:?}, extra {:?}",
            &expected - &found,
            &found - &expected
        );
        // The wildcard host (every port answers) is flagged, and none of its 65535
        // "open" ports is reported (the exact comparison above has no extras).
        assert!(summary.contains("1 wildcard host(s)"), "run {run}: {summary}");
        assert!(summary.contains("(wildcard: SYN proxy"), "run {run}: {summary}");
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
    silent.extend(lab.dead());
    let expected = lab.expected_open();
    for run in 1..=3 {
        let mut args: Vec<&str> = live.iter().map(String::as_str).collect();
        args.extend(["-p", "-", "--mode", "connect", "--rate", "100000"]);
        let scanned = lab.scan_with_summary(&args);
        lab.assert_wildcard_line(&scanned);
        let Scanned { found, summary, .. } = scanned;
        assert_eq!(
            found,
            expected,
            "run {run}: missing {:?}, extra {:?}",
            &expected - &found,
            &found - &expected
        );
        // The wildcard host (every port answers) is flagged; none of its ports is
        // reported (the exact comparison above has no extras).
        assert!(summary.contains("1 wildcard host(s)"), "run {run}: {summary}");
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

fn ping(lab: &Lab, mode: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut targets = ips(lab.desc["hosts"].as_array().expect("hosts"));
    targets.extend(lab.dead());
    let mut args = vec!["ping", "--json", "--mode", mode];
    args.extend(targets.iter().map(String::as_str));
    let out = lab.run(&lab.config, &args);
    assert!(out.status.success(), "ping failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (v["ip"].as_str().expect("ip").to_string(), v)
        })
        .collect()
}

#[test]
fn liveness_tells_live_from_dead_in_both_modes() {
    let lab = Lab::up();
    for mode in ["syn", "connect"] {
        let verdicts = ping(&lab, mode);
        assert_eq!(verdicts.len(), 11, "{mode}: one verdict per target");
        for host in lab.desc["hosts"].as_array().expect("hosts") {
            let ip = host["ip"].as_str().expect("ip");
            let expect_alive = host["kind"] != "filtered";
            assert_eq!(
                verdicts[ip]["alive"], expect_alive,
                "{mode}: {ip} ({}) {}",
                host["kind"], verdicts[ip]
            );
        }
        for dead in lab.dead() {
            assert_eq!(verdicts[&dead]["alive"], false, "{mode}: {dead}");
        }
        if mode == "syn" {
            // The ICMP-dropping host is alive through TCP alone; a normal host
            // answers the echo too.
            let probes = |ip: &str| verdicts[ip]["probes"].as_array().expect("probes").clone();
            let icmp = |ip: &str| {
                probes(ip)
                    .into_iter()
                    .find(|p| p["method"] == "icmp_echo")
                    .expect("icmp probe")["outcome"]
                    .clone()
            };
            let h4 = lab.hosts("icmp_drop")[0]["ip"].as_str().expect("ip").to_string();
            let h1 = lab.hosts("live")[0]["ip"].as_str().expect("ip").to_string();
            assert_eq!(icmp(&h4), "filtered");
            assert_eq!(icmp(&h1), "open");
            assert!(probes(&h4)
                .iter()
                .any(|p| p["method"] == "tcp_syn" && p["outcome"] == "closed"));
            // ACK pings draw resets from every live host, and nothing from the
            // host whose firewall drops everything.
            assert!(probes(&h1)
                .iter()
                .any(|p| p["method"] == "tcp_ack" && p["outcome"] == "closed"));
            let hf = lab.hosts("filtered")[0]["ip"].as_str().expect("ip").to_string();
            assert!(probes(&hf).iter().any(|p| p["method"] == "tcp_ack"));
            assert!(probes(&hf)
                .iter()
                .filter(|p| p["method"] == "tcp_ack")
                .all(|p| p["outcome"] == "filtered"));
        }
    }
}

#[test]
fn ipv6_targets_are_exact_in_both_modes() {
    let lab = Lab::up();
    // The listeners are dual-stack: the same open ports on each host's IPv6 address.
    let mut expected = BTreeSet::new();
    for h in lab.desc["hosts"].as_array().expect("hosts") {
        for p in h["open"].as_array().expect("open") {
            expected.insert((
                h["ip6"].as_str().expect("ip6").to_string(),
                p.as_u64().expect("port"),
            ));
        }
    }
    let v6 = |kinds: &[&str]| -> Vec<String> {
        lab.desc["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .filter(|h| kinds.iter().any(|k| h["kind"] == *k))
            .map(|h| h["ip6"].as_str().expect("ip6").to_string())
            .collect()
    };
    let all = v6(&["live", "icmp_drop", "filtered", "wildcard"]);
    let mut args: Vec<&str> = all.iter().map(String::as_str).collect();
    args.extend(["-p", "-", "--mode", "syn", "--rate", "100000", "--timeout", "1s"]);
    let Scanned { found, summary, .. } = lab.scan_with_summary(&args);
    assert_eq!(
        found,
        expected,
        "syn: missing {:?}, extra {:?}",
        &expected - &found,
        &found - &expected
    );
    assert!(
        summary.contains("1 wildcard host(s)") && summary.contains(", syn)"),
        "{summary}"
    );

    let answering = v6(&["live", "icmp_drop", "wildcard"]);
    let mut args: Vec<&str> = answering.iter().map(String::as_str).collect();
    args.extend(["-p", "-", "--mode", "connect", "--rate", "100000"]);
    let Scanned { found, summary, .. } = lab.scan_with_summary(&args);
    assert_eq!(
        found,
        expected,
        "connect: missing {:?}, extra {:?}",
        &expected - &found,
        &found - &expected
    );
    assert!(summary.contains("1 wildcard host(s)"), "{summary}");
}

/// Packets h1 has received from the scanner's second address (an nft counter).
fn packets_from_second_address(lab: &Lab) -> u64 {
    let ns = lab.hosts("live")[0]["ns"].as_str().expect("ns").to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "list", "table", "inet", "count"])
        .output()
        .expect("nft");
    let text = stdout(&out);
    let after = text
        .split("counter packets ")
        .nth(1)
        .unwrap_or_else(|| panic!("no counter in {text}"));
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("packet count")
}

#[test]
fn probes_leave_from_the_configured_source_address() {
    let lab = Lab::up();
    let h1 = lab.hosts("live")[0];
    let ip = h1["ip"].as_str().expect("ip").to_string();
    let expected: BTreeSet<(String, u64)> = h1["open"]
        .as_array()
        .expect("open")
        .iter()
        .map(|p| (ip.clone(), p.as_u64().expect("port")))
        .collect();
    let dir = support::tempdir();
    let cfg = support::write_config(
        dir.path(),
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"10.77.0.0/24\"\n[scan]\nsource_ip = \"10.77.255.5\"\n",
    );
    let mut before = packets_from_second_address(&lab);
    assert_eq!(before, 0);
    for mode in ["syn", "connect"] {
        let out = lab.run(
            &cfg,
            &[
                "scan", &ip, "-p", "-", "--json", "--rate", "100000", "--mode", mode,
            ],
        );
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let found = support::open_ports(&out);
        assert_eq!(found, expected, "{mode}");
        let now = packets_from_second_address(&lab);
        assert!(
            now - before >= 65_535,
            "{mode}: only {} packets came from 10.77.255.5",
            now - before
        );
        before = now;
    }
    // An address this machine does not have is refused up front, by name.
    let bad = support::write_config(
        dir.path(),
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"10.77.0.0/24\"\n[scan]\nsource_ip = \"10.77.255.6\"\n",
    );
    let out = lab.run(&bad, &["scan", &ip]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("scan.source_ip = \"10.77.255.6\": not an address of this machine"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn per_host_rate_paces_every_host() {
    let lab = Lab::up();
    let hosts = ips(lab.hosts("live").into_iter().take(2));
    let expected: BTreeSet<(String, u64)> = lab
        .expected_open()
        .into_iter()
        .filter(|(ip, port)| hosts.contains(ip) && *port <= 2000)
        .collect();
    let dir = support::tempdir();
    // 2 hosts x 2000 ports at 1000 probes/s per host: at least 2 s, although the
    // global rate would allow it in 40 ms.
    let cfg = support::write_config(
        dir.path(),
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"10.77.0.0/24\"\n[scan]\nrate = 100000\nper_host_rate = 1000\n",
    );
    for mode in ["syn", "connect"] {
        let started = std::time::Instant::now();
        let mut args = vec!["scan"];
        args.extend(hosts.iter().map(String::as_str));
        args.extend(["-p", "1-2000", "--json", "--mode", mode, "--timeout", "300ms"]);
        let out = lab.run(&cfg, &args);
        let elapsed = started.elapsed();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let found = support::open_ports(&out);
        assert_eq!(found, expected, "{mode}");
        assert!(
            elapsed >= std::time::Duration::from_millis(1900),
            "{mode}: took only {elapsed:?}"
        );
    }
}
