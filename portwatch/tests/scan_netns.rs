//! `portwatch scan 127.0.0.1 -p - --json` inside a fresh namespace finds exactly the
//! listening ports that `ss -ltn` reports there, edge ports 1 and 65535 included;
//! wide scans are exact and stream their targets in bounded memory.

#![allow(clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;

use support::{stderr, stdout, Netns};

fn ss_listening_ports(ns: &Netns) -> BTreeSet<u16> {
    let out = ns.command("ss").args(["-ltnH"]).output().expect("ss");
    assert!(out.status.success(), "ss failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|line| {
            // State Recv-Q Send-Q Local:Port Peer:Port
            let local = line.split_whitespace().nth(3)?;
            local.rsplit_once(':')?.1.parse().ok()
        })
        .collect()
}

#[test]
fn full_range_scan_matches_ss() {
    let ns = Netns::new("scan");
    // Edges, well-known, high-risk, ephemeral-range and random ports; some bound to
    // 127.0.0.1 and some to 0.0.0.0 (both reachable at 127.0.0.1).
    let mut listeners = Vec::new();
    for port in [
        1u16, 2, 22, 80, 443, 3306, 6379, 8080, 31337, 40000, 50001, 65534, 65535,
    ] {
        listeners.push(ns.listen(&format!("127.0.0.1:{port}")));
    }
    for port in [9200u16, 27017] {
        listeners.push(ns.listen(&format!("0.0.0.0:{port}")));
    }
    // A few kernel-chosen ports too, so the set is not one the code could know.
    for _ in 0..3 {
        listeners.push(ns.listen("127.0.0.1:0"));
    }
    let expected = ss_listening_ports(&ns);
    assert_eq!(
        expected.len(),
        listeners.len(),
        "ss sees every listener: {expected:?}"
    );

    let out = ns.portwatch(&["scan", "127.0.0.1", "-p", "-", "--json"]);
    assert!(out.status.success(), "scan failed: {}", stderr(&out));
    let mut found = BTreeSet::new();
    for line in stdout(&out).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
        assert_eq!(v["ip"], "127.0.0.1");
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["state"], "open");
        let port = v["port"].as_u64().expect("port") as u16;
        assert!(found.insert(port), "port {port} reported twice");
    }
    assert_eq!(found, expected, "scan result differs from ss -ltn");
    assert!(found.contains(&1) && found.contains(&65535));
    let summary = stderr(&out);
    assert!(
        summary.contains("65535 port(s)") && summary.contains("0 not probed"),
        "{summary}"
    );
    drop(listeners);
}

#[test]
fn cidr_and_ipv6_targets() {
    let ns = Netns::new("scan6");
    let dir = support::tempdir();
    let cfg = support::write_config(
        dir.path(),
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.0/29\"\n[[assets]]\ncidr = \"::1/128\"\n",
    );
    let cfg = cfg.to_str().expect("utf8");
    let _a = ns.listen("127.0.0.2:8081");
    let _b = ns.listen("127.0.0.6:8082");
    let _c = ns.listen("[::1]:8083");
    let out = ns.portwatch(&[
        "-c",
        cfg,
        "scan",
        "127.0.0.0/29",
        "::1",
        "-p",
        "8080-8090",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let found = support::open_ports(&out);
    let expected: BTreeSet<(String, u64)> = [("127.0.0.2", 8081), ("127.0.0.6", 8082), ("::1", 8083)]
        .iter()
        .map(|(i, p)| (i.to_string(), *p))
        .collect();
    assert_eq!(found, expected);
    assert!(
        stderr(&out).contains("scanned 9 host(s) x 11 port(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_slash_24_times_1000_ports_is_exact_with_bounded_memory() {
    let ns = Netns::new("wide");
    let dir = support::tempdir();
    let cfg = support::write_config(
        dir.path(),
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.0/24\"\n",
    );
    let mut expected = BTreeSet::new();
    let mut listeners = Vec::new();
    for (host, port) in [
        (1u8, 22u16),
        (7, 80),
        (42, 443),
        (128, 999),
        (200, 1),
        (255, 1000),
    ] {
        listeners.push(ns.serve(&format!("127.0.0.{host}:{port}")));
        expected.insert((format!("127.0.0.{host}"), u64::from(port)));
    }
    // One listener on 0.0.0.0 answers on all 256 addresses. It accepts, like a real
    // service: one that never accepts fills its backlog after 128 handshakes and the
    // kernel then drops SYNs (correctly seen as filtered by a connect scan).
    listeners.push(ns.serve("0.0.0.0:500"));
    for host in 0..=255u8 {
        expected.insert((format!("127.0.0.{host}"), 500));
    }
    for mode in ["syn", "connect"] {
        let (out, peak_mb) = ns.portwatch_peak_rss(&[
            "-c",
            cfg.to_str().expect("utf8"),
            "scan",
            "127.0.0.0/24",
            "-p",
            "1-1000",
            "--json",
            "--mode",
            mode,
            "--rate",
            "200000",
            "--timeout",
            "500ms",
        ]);
        // Targets are streamed, never materialised.
        eprintln!("{mode}: peak RSS {peak_mb} MB");
        assert!(peak_mb <= 64, "{mode}: peak RSS {peak_mb} MB");
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let found = support::open_ports(&out);
        assert_eq!(
            found,
            expected,
            "{mode}: missing {:?} extra {:?}",
            &expected - &found,
            &found - &expected
        );
        assert!(
            stderr(&out).contains("scanned 256 host(s) x 1000 port(s)"),
            "{}",
            stderr(&out)
        );
    }
    drop(listeners);
}

#[test]
fn a_slash_16_with_few_ports_streams_in_bounded_memory() {
    // 65,536 hosts x 3 ports: per-host bookkeeping must scale with the ports probed,
    // not with all 65,536 ports, or this alone would need hundreds of MB.
    let ns = Netns::new("wide16");
    let dir = support::tempdir();
    let cfg = support::write_config(
        dir.path(),
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.0/16\"\n",
    );
    let _web = ns.serve("127.0.3.7:80");
    let _tls = ns.serve("127.0.200.42:443");
    let _everywhere = ns.serve("0.0.0.0:500");
    let (out, peak_mb) = ns.portwatch_peak_rss(&[
        "-c",
        cfg.to_str().expect("utf8"),
        "scan",
        "127.0.0.0/16",
        "-p",
        "80,443,500",
        "--json",
        "--mode",
        "syn",
        "--rate",
        "300000",
        "--timeout",
        "500ms",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let found = support::open_ports(&out);
    assert_eq!(found.len(), 65_536 + 2);
    assert!(found.contains(&("127.0.3.7".to_string(), 80)));
    assert!(found.contains(&("127.0.200.42".to_string(), 443)));
    assert!(found.contains(&("127.0.255.255".to_string(), 500)));
    assert!(
        stderr(&out).contains("scanned 65536 host(s) x 3 port(s)"),
        "{}",
        stderr(&out)
    );
    eprintln!("/16: peak RSS {peak_mb} MB");
    assert!(peak_mb <= 64, "peak RSS {peak_mb} MB");
}
