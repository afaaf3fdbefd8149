//! Bad input never panics: each gives a one-line error that names the bad value and
//! a non-zero exit code. Run inside a namespace with no routes, so that even a broken
//! scope guard could not send anything off the machine.

mod support;

use support::{stderr, tempdir, write_config, Netns};

fn assert_clean_error(out: &std::process::Output, needle: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure for {needle:?}, got success"
    );
    assert_eq!(out.status.code(), Some(2), "exit code for {needle:?}: {err}");
    assert!(!err.contains("panicked"), "panic for {needle:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line for {needle:?}, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in {err:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout for {needle:?}");
}

#[test]
fn malformed_cidr_target() {
    let ns = Netns::new("bad");
    assert_clean_error(&ns.portwatch(&["scan", "10.0.0.300/24"]), "10.0.0.300/24");
    assert_clean_error(&ns.portwatch(&["scan", "127.0.0.1/40"]), "/40");
}

#[test]
fn port_out_of_range() {
    let ns = Netns::new("bad");
    assert_clean_error(&ns.portwatch(&["scan", "127.0.0.1", "-p", "70000"]), "70000");
    assert_clean_error(&ns.portwatch(&["scan", "127.0.0.1", "-p", "80,0"]), "port 0");
    assert_clean_error(&ns.portwatch(&["scan", "127.0.0.1", "--rate", "0"]), "--rate 0");
}

#[test]
fn target_outside_scope() {
    let ns = Netns::new("bad");
    // Without a config the scope is the loopback demo address only.
    assert_clean_error(
        &ns.portwatch(&["scan", "192.0.2.1"]),
        "`192.0.2.1` is outside the asset scope",
    );
    assert_clean_error(
        &ns.portwatch(&["scan", "127.0.0.0/24"]),
        "outside the asset scope",
    );
    // With a config: an asset range, and a target straddling its edge.
    let dir = tempdir();
    let cfg = write_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.0/28\"\n[scope]\nmax_targets = 4\nallow_reserved = true\n",
    );
    let cfg = cfg.to_str().expect("utf8");
    assert_clean_error(
        &ns.portwatch(&["-c", cfg, "scan", "127.0.0.0/27"]),
        "`127.0.0.0/27` is outside",
    );
    assert_clean_error(
        &ns.portwatch(&["-c", cfg, "scan", "127.0.0.0/28"]),
        "more than the cap of 4",
    );
}

#[test]
fn up_refuses_assets_over_the_cap_unless_allowed() {
    let ns = Netns::new("bad");
    let dir = tempdir();
    let cfg = write_config(
        dir.path(),
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"10.0.0.0/8\"\n",
    );
    let out = ns.portwatch(&[
        "-c",
        cfg.to_str().expect("utf8"),
        "--data",
        dir.path().to_str().expect("utf8"),
        "up",
    ]);
    assert_clean_error(&out, "more than scope.max_targets = 65536");
    assert!(
        !dir.path().join("events.db").exists(),
        "refused before creating anything"
    );
}

#[test]
fn config_errors_name_key_and_value() {
    let ns = Netns::new("bad");
    let dir = tempdir();
    let cases = [
        (
            "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.1/32\"\n[schedule]\nfull_portz = \"1h\"\n",
            "full_portz",
        ),
        ("[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.1/32\"\nownr = \"x\"\n", "ownr"),
        (
            "[[assets]]\ncidr = \"10.0.0.300/24\"\n",
            "assets[0].cidr = \"10.0.0.300/24\"",
        ),
        (
            "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.1\"\n[scan]\nhigh_risk_ports = \"22,70000\"\n",
            "70000",
        ),
        (
            "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.1\"\n[schedule]\nliveness = \"soon\"\n",
            "schedule.liveness = \"soon\"",
        ),
        ("[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.1\"\n[scan\n", "line 5"),
        (
            "[[assets]]\ncidr = \"192.168.0.0/16\"\n",
            "overlaps the reserved range 192.168.0.0/16 (private (RFC 1918))",
        ),
        (
            "[[assets]]\ncidr = \"8.8.8.0/24\"\n[scan]\nrate = 5000000\n",
            "scan.rate = 5000000: must be between 1 and scan.max_rate = 1000000",
        ),
    ];
    for (text, needle) in cases {
        let cfg = write_config(dir.path(), text);
        let cfg = cfg.to_str().expect("utf8");
        assert_clean_error(&ns.portwatch(&["-c", cfg, "check-config"]), needle);
        assert_clean_error(&ns.portwatch(&["-c", cfg, "up"]), needle);
        assert_clean_error(&ns.portwatch(&["-c", cfg, "scan", "127.0.0.1"]), needle);
    }
}

#[test]
fn queries_without_state_say_so() {
    let ns = Netns::new("bad");
    let dir = tempdir();
    let data = dir.path().join("nothing-here");
    assert_clean_error(
        &ns.portwatch(&["--data", data.to_str().expect("utf8"), "ports"]),
        "no state at",
    );
    assert_clean_error(&ns.portwatch(&["ports", "--ip", "not-an-ip"]), "--ip `not-an-ip`");
}

#[test]
fn syn_mode_without_privileges_is_a_clear_error_and_auto_falls_back() {
    let ns = Netns::new("priv");
    let _listener = ns.listen("127.0.0.1:8081");
    // Drop root: run the real binary as nobody, without CAP_NET_RAW.
    let as_nobody = |args: &[&str]| {
        ns.command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", support::bin()])
            .args(args)
            .output()
            .expect("setpriv")
    };
    let out = as_nobody(&["scan", "127.0.0.1", "-p", "8080-8082", "--mode", "syn"]);
    assert_clean_error(&out, "SYN scanning needs root or CAP_NET_RAW");
    let out = as_nobody(&["scan", "127.0.0.1", "-p", "8080-8082", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("using the TCP connect scanner"),
        "{}",
        stderr(&out)
    );
    let found: Vec<serde_json::Value> = support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["port"], 8081);
}
