//! Timeliness in the embedded deployment (issue 20): `portwatch up` cuts each pass
//! into chunks and its worker takes liveness and high-risk chunks before the rest,
//! so a high-risk port opened while a full-port sweep runs is found within one
//! high-risk cadence plus one chunk; a full-port cadence shorter than its pass is
//! reported as overrun and nothing piles up. (The scale-out twin is in
//! scaleout_chunks.rs.)

#![allow(clippy::print_stderr)]

mod support;

use std::time::Duration;

use support::{loopback_up_config, sweep, tempdir, Netns, Proc};

const API: &str = "127.0.0.1:18099";

#[test]
fn a_high_risk_port_is_found_between_two_chunks_of_a_sweep() {
    let ns = Netns::new("chunks");
    let dir = tempdir();
    // 16 hosts × 65,535 ports at 20,000 probes a second: a sweep of ~50 s in chunks
    // of ~2 s; the full-port cadence (2 s) is far shorter than its pass.
    let cfg = loopback_up_config(
        dir.path(),
        "[[assets]]\ncidr = \"127.0.0.0/28\"",
        "liveness = \"off\"\nfull_ports = \"2s\"\nhigh_risk_ports = \"3s\"\nport_recheck = \"off\"\noffline_high_risk_ports = \"off\"\nall_assets_full_ports = \"off\"\nservice_detection = \"off\"\nadmin_panels = \"off\"\nchunk_target = \"2s\"",
        API,
        "[auth]\nanonymous_read = true",
    );
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("rate = 100000", "rate = 20000\nhigh_risk_ports = \"22,6379\"");
    std::fs::write(&cfg, text).expect("config");
    let cfg = cfg.to_str().expect("utf8");
    let mut up = Proc(ns.spawn_portwatch(&["--config", cfg, "up"], &dir.path().join("up.log")));
    let (took, _redis) = sweep::found_while_sweeping(
        &ns,
        API,
        ("127.0.0.9", 6379),
        Duration::from_secs(3),
        Duration::from_secs(2),
    );
    eprintln!("embedded: a high-risk port opened during a sweep found after {took:?}");
    std::thread::sleep(Duration::from_secs(3));
    sweep::overran_without_pile_up(&ns, API);
    assert_eq!(up.stop(), Some(0));
}
