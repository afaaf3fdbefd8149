//! docker-compose.yml cannot run here (no Docker engine), so it is kept correct by
//! checking it against the binary: every portwatch service's command parses with the
//! real CLI, the config it mounts loads, the names and ports the config uses are
//! services and ports of the file, every volume and network is declared, and the
//! Grafana provisioning it mounts points at its ClickHouse and reads tables that the
//! migrations create.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use portwatch::cli::Cli;
use portwatch::config::Config;
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut value: Value = serde_yaml::from_str(&text).expect("docker-compose.yml parses");
    value.apply_merge().expect("YAML merge keys resolve");
    value
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The host side of a `./path:/container[:ro]` bind mount.
fn bind_source(mount: &str) -> Option<&str> {
    mount.split(':').next().filter(|s| s.starts_with("./"))
}

#[test]
fn compose_file_matches_the_binary_and_its_config() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    for needed in [
        "kafka",
        "clickhouse",
        "grafana",
        "migrate",
        "control",
        "projector",
        "probe-dmz",
        "probe-office",
    ] {
        assert!(names.contains(needed), "service {needed} missing: {names:?}");
    }
    let declared_volumes: BTreeSet<String> = doc["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let declared_networks: BTreeSet<String> = doc["networks"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();

    let mut zones_run = BTreeSet::new();
    let mut roles = BTreeSet::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        for mount in strings(&svc["volumes"]) {
            match bind_source(&mount) {
                Some(src) => assert!(
                    repo().join(src).exists() || src == "./portwatch.toml",
                    "{name}: {src} does not exist"
                ),
                None => {
                    let vol = mount.split(':').next().unwrap();
                    assert!(
                        declared_volumes.contains(vol),
                        "{name}: volume {vol} not declared"
                    );
                }
            }
        }
        for net in strings(&svc["networks"]) {
            assert!(
                declared_networks.contains(&net),
                "{name}: network {net} not declared"
            );
        }
        for dep in strings(&svc["depends_on"]) {
            assert!(names.contains(&dep), "{name}: depends on unknown service {dep}");
        }
        if svc["image"].as_str() != Some("portwatch:local") {
            continue;
        }
        // A portwatch service: its command is a valid invocation of this binary.
        let command = strings(&svc["command"]);
        let mut argv = vec!["portwatch".to_string()];
        argv.extend(command.iter().cloned());
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
        roles.insert(command[0].clone());
        if let portwatch::cli::Command::Probe(args) = &cli.command {
            zones_run.insert(args.zone.clone().expect("probe services name their zone"));
            let nets = strings(&svc["networks"]);
            assert!(
                nets.iter().any(|n| n.starts_with("zone-")),
                "{name} sits on a zone network"
            );
        }
        if let portwatch::cli::Command::Control(args) = &cli.command {
            let listen = args.listen.as_deref().unwrap();
            let port = listen.rsplit(':').next().unwrap();
            let published = strings(&svc["ports"]);
            assert!(
                published.iter().any(|p| p.ends_with(&format!(":{port}"))),
                "control listens on {port} but publishes {published:?}"
            );
        }
        // The config it reads: the file mounted at PORTWATCH_CONFIG.
        let config_in_container = svc["environment"]["PORTWATCH_CONFIG"].as_str().unwrap();
        let source = strings(&svc["volumes"])
            .into_iter()
            .find(|m| m.split(':').nth(1) == Some(config_in_container))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {config_in_container}"));
        if svc["profiles"].is_sequence() {
            continue; // the embedded profile reads the user's own ./portwatch.toml
        }
        let host_path = repo().join(bind_source(&source).unwrap());
        let cfg = Config::load(Some(&host_path)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let so = &cfg.scaleout;
        let (broker_host, broker_port) = so.kafka.brokers.split_once(':').unwrap();
        assert!(
            names.contains(broker_host),
            "[kafka] brokers names service {broker_host}"
        );
        let advertised = doc["services"][broker_host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
            .as_str()
            .unwrap();
        assert!(
            advertised.contains(&format!("{broker_host}:{broker_port}")),
            "kafka advertises {advertised}"
        );
        let ch = so.clickhouse.url.trim_start_matches("http://");
        let (ch_host, ch_port) = ch.split_once(':').unwrap();
        assert!(
            names.contains(ch_host),
            "[clickhouse] url names service {ch_host}"
        );
        assert_eq!(ch_port, "8123", "ClickHouse's HTTP port in the image");
        let ch_env = &doc["services"][ch_host]["environment"];
        assert_eq!(
            ch_env["CLICKHOUSE_DB"].as_str(),
            Some(so.clickhouse.database.as_str())
        );
        assert_eq!(ch_env["CLICKHOUSE_USER"].as_str(), so.clickhouse.user.as_deref());
        assert_eq!(
            ch_env["CLICKHOUSE_PASSWORD"].as_str(),
            so.clickhouse.password.as_deref()
        );
        let zones: BTreeSet<String> = cfg.assets.iter().map(|a| a.zone.clone()).collect();
        if let portwatch::cli::Command::Probe(args) = &cli.command {
            assert!(
                zones.contains(args.zone.as_ref().unwrap()),
                "{name}: zone not in the config's assets"
            );
        }
    }
    for role in ["migrate", "control", "project", "probe"] {
        assert!(roles.contains(role), "no service runs `portwatch {role}`");
    }
    let cfg = Config::load(Some(&repo().join("deploy/scaleout.toml"))).unwrap();
    let asset_zones: BTreeSet<String> = cfg.assets.iter().map(|a| a.zone.clone()).collect();
    assert_eq!(zones_run, asset_zones, "one probe service per zone of the assets");
}

#[test]
fn grafana_provisioning_points_at_compose_clickhouse_and_known_tables() {
    let doc = compose();
    let ds_text =
        std::fs::read_to_string(repo().join("grafana/provisioning/datasources/clickhouse.yaml")).unwrap();
    let ds: Value = serde_yaml::from_str(&ds_text).unwrap();
    let source = &ds["datasources"][0];
    let cfg = Config::load(Some(&repo().join("deploy/scaleout.toml"))).unwrap();
    assert_eq!(source["jsonData"]["host"].as_str(), Some("clickhouse"));
    assert!(doc["services"]["clickhouse"].is_mapping());
    assert_eq!(source["jsonData"]["port"].as_u64(), Some(8123));
    assert_eq!(
        source["jsonData"]["defaultDatabase"].as_str(),
        Some(cfg.scaleout.clickhouse.database.as_str())
    );
    let uid = source["uid"].as_str().unwrap();

    // Mounted where the provider looks.
    let grafana_mounts = strings(&doc["services"]["grafana"]["volumes"]);
    let prov_text =
        std::fs::read_to_string(repo().join("grafana/provisioning/dashboards/portwatch.yaml")).unwrap();
    let prov: Value = serde_yaml::from_str(&prov_text).unwrap();
    let path = prov["providers"][0]["options"]["path"].as_str().unwrap();
    assert!(
        grafana_mounts
            .iter()
            .any(|m| m.starts_with("./grafana/dashboards:") && m.contains(path)),
        "dashboards folder mounted at {path}: {grafana_mounts:?}"
    );

    // Tables the migrations create.
    let tables: BTreeSet<String> = portwatch_stores::CLICKHOUSE_MIGRATIONS
        .iter()
        .flat_map(|m| portwatch_stores::statements(m.2))
        .filter_map(|s| {
            let words: Vec<&str> = s.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "EXISTS")?;
            Some(words.get(at + 1)?.trim_end_matches('(').to_string())
        })
        .collect();
    assert!(
        tables.contains("port_state") && tables.contains("exposure_daily"),
        "{tables:?}"
    );

    let mut panels = 0;
    for entry in std::fs::read_dir(repo().join("grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            panels += 1;
            assert_eq!(panel["datasource"]["uid"].as_str(), Some(uid));
            for target in panel["targets"].as_array().unwrap() {
                let sql = target["rawSql"].as_str().unwrap();
                let words: Vec<&str> = sql.split_whitespace().collect();
                for w in words.windows(2).filter(|w| w[0] == "FROM") {
                    let table = w[1].trim_end_matches(')');
                    if table.starts_with('(') {
                        continue;
                    }
                    assert!(
                        tables.contains(table),
                        "{}: panel {} reads unknown table {table}",
                        path.display(),
                        panel["title"]
                    );
                }
            }
        }
    }
    assert!(panels >= 8, "dashboards have {panels} panels");
}
