//! Configuration: TOML in, a checked [`Config`] out.
//!
//! Two steps, as everywhere in portwatch: serde reads the raw file (unknown keys are
//! errors, every field optional), then [`RawConfig::validate`] applies the named
//! defaults and turns strings into typed values, with errors that name the key and
//! the value. Nothing downstream ever sees an unchecked value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portwatch_events::Task;
use portwatch_probes::Scope;
pub use portwatch_projections::Asset;
use portwatch_projections::{Assets, FoldConfig};
use serde::Deserialize;

pub mod alerts;
mod assets;
pub mod scaleout;
mod scan;
mod schedule;
mod secure;
pub mod service;

pub use assets::{RawAsset, RawScope};
pub use scaleout::ScaleOut;
pub use scan::{check_concurrency, check_rate, check_timeout, check_tries, RawScan, ScanSettings};
pub use schedule::RawSchedule;

/// The documented default configuration; also the demo scope used without a file.
pub const DEFAULT_TOML: &str = include_str!("../../default.toml");

/// Default scan rate, connection attempts per second.
pub const DEFAULT_RATE: u32 = 10_000;
/// Highest rate any config may name (absurdly high values are typos).
pub const MAX_RATE: u32 = 10_000_000;
/// Default hard cap on the scan rate.
pub const DEFAULT_MAX_RATE: u32 = 1_000_000;
/// Default SYN passes.
pub const DEFAULT_TRIES: u32 = 3;
/// Default handshake timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Default in-flight cap.
pub const DEFAULT_CONCURRENCY: usize = 2048;
/// Default per-job address cap.
pub const DEFAULT_MAX_TARGETS: u128 = 65_536;
/// Default number of misses before a port is declared closed.
pub const DEFAULT_CLOSE_AFTER_MISSES: u32 = 2;
/// Default state directory.
pub const DEFAULT_STORE_PATH: &str = "portwatch-data";
/// Default API address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7678";
/// Default zone of an asset.
pub const DEFAULT_ZONE: &str = portwatch_work::DEFAULT_ZONE;
/// Shortest accepted task cadence.
pub const MIN_CADENCE: Duration = Duration::from_secs(1);

/// Why a config was refused. Always one line, naming the key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, or wrong type.
    #[error("config error in {origin}{line}: {key}{message}")]
    Parse {
        /// File name (or "built-in defaults").
        origin: String,
        /// " line N" when known.
        line: String,
        /// "key.path: " when known.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value of the right type that is not acceptable.
    #[error("config error in {origin}: {key} = {value}: {reason}")]
    Invalid {
        /// File name.
        origin: String,
        /// Dotted key.
        key: String,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// `[node]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Name of this probe node in events. Default: the host name.
    pub name: Option<String>,
}

/// `[projection]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProjection {
    /// Misses before "closed". Default: 2.
    pub close_after_misses: Option<i64>,
}

/// `[store]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// State directory. Default: "portwatch-data".
    pub path: Option<String>,
}

/// `[api]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Listen address. Default: "127.0.0.1:7678".
    pub listen: Option<String>,
    /// Longest wait for a request's head (and a TLS handshake). Default: "10s".
    pub header_timeout: Option<String>,
    /// Longest time to answer a request, its body included. Default: "30s".
    pub request_timeout: Option<String>,
    /// Most connections served at once; at most a quarter of the open-file limit,
    /// so that the scanner keeps the rest. Default: 256.
    pub max_connections: Option<usize>,
    /// PEM certificate chain: serve HTTPS (with `tls_key`).
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<String>,
}

/// Checked `[api]` (beside `listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Longest wait for a request's head.
    pub header_timeout: Duration,
    /// Longest time to answer a request.
    pub request_timeout: Duration,
    /// Most connections at once (before the open-file limit's cap).
    pub max_connections: usize,
    /// Certificate and key files, for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// `[auth]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Reads (GET) need no token. Writes always do. Default: false.
    pub anonymous_read: Option<bool>,
    /// An admin may issue a token for an existing user other than themselves. Such a
    /// token works, but counts for nobody's second confirmation. Default: false.
    pub admin_may_issue_for_others: Option<bool>,
    /// Failed authentications allowed per client address and per token id a minute;
    /// past them, 429 with Retry-After. Default: 10.
    pub failures_per_minute: Option<u32>,
}

/// `[control]`: active control (blocks).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Only render and check blocks, never apply them. Default: true.
    pub dry_run: Option<bool>,
    /// The driver: "nftables", "command" or "http". Default: "nftables".
    pub driver: Option<String>,
    /// command: the argv, with {action} (block/unblock), {ip}, {proto}, {port},
    /// {seconds} and {block_id} filled in.
    pub command: Option<Vec<String>>,
    /// http: the URL that takes the block and unblock requests.
    pub url: Option<String>,
    /// The nftables table portwatch owns. Default: "portwatch".
    pub table: Option<String>,
    /// The hook its rule sits on: "input" (the host itself) or "forward" (a
    /// gateway). Default: "input".
    pub hook: Option<String>,
    /// Longest block. Default: "7d".
    pub max_duration: Option<String>,
    /// Ports no block may cover: `"22"` (that port on every address of the machine
    /// that applies blocks), `"10.0.0.5:443"`, `"10.0.0.0/24:8080"`,
    /// `"[2001:db8::1]:22"`. The API's own port is always protected. Default: ["22"].
    pub protect: Option<Vec<String>>,
    /// Scale-out: how long a leading `control` instance that stopped answering keeps
    /// the lease before a standby takes over (the Kafka session timeout of the lease
    /// group; at least the broker's `group.min.session.timeout.ms`). Default: "6s".
    pub lease_timeout: Option<String>,
}

pub use portwatch_work::blocks::{ControlDriver, ControlSettings, ProtectEntry};

impl RawControl {
    fn validate(self, at: &Origin<'_>) -> Result<ControlSettings, ConfigError> {
        let driver = match self.driver.as_deref() {
            None | Some("nftables") => ControlDriver::Nftables,
            Some("command") => match self.command {
                Some(argv) if !argv.is_empty() && !argv[0].is_empty() => ControlDriver::Command(argv),
                _ => {
                    return Err(at.invalid(
                        "control.command",
                        "(missing)",
                        "the command driver needs command = [\"program\", \"{action}\", \"{ip}\", ...]",
                    ))
                }
            },
            Some("http") => match self.url {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    ControlDriver::Http(url)
                }
                other => {
                    return Err(at.invalid(
                        "control.url",
                        &format!("{:?}", other.unwrap_or_default()),
                        "the http driver needs an http:// or https:// URL",
                    ))
                }
            },
            Some(other) => {
                return Err(at.invalid(
                    "control.driver",
                    &format!("{other:?}"),
                    "expected nftables, command or http",
                ))
            }
        };
        let table = self.table.unwrap_or_else(|| "portwatch".into());
        if table.is_empty()
            || !table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(at.invalid(
                "control.table",
                &format!("{table:?}"),
                "letters, digits, '_' or '-'",
            ));
        }
        let hook = self.hook.unwrap_or_else(|| "input".into());
        if !matches!(hook.as_str(), "input" | "forward") {
            return Err(at.invalid("control.hook", &format!("{hook:?}"), "expected input or forward"));
        }
        let text = self.max_duration.unwrap_or_else(|| "7d".into());
        let max_duration = parse_duration(&text)
            .map_err(|e| at.invalid("control.max_duration", &format!("{text:?}"), &e))?;
        let protect = self
            .protect
            .unwrap_or_else(|| vec!["22".to_string()])
            .iter()
            .map(|p| ProtectEntry::parse(p).map_err(|e| at.invalid("control.protect", &format!("{p:?}"), &e)))
            .collect::<Result<Vec<_>, _>>()?;
        let text = self.lease_timeout.unwrap_or_else(|| "6s".into());
        let lease_timeout = parse_duration(&text)
            .ok()
            .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(300)).contains(d))
            .ok_or_else(|| {
                at.invalid(
                    "control.lease_timeout",
                    &format!("{text:?}"),
                    "a duration from 1s to 5m",
                )
            })?;
        Ok(ControlSettings {
            dry_run: self.dry_run.unwrap_or(true),
            driver,
            table,
            hook,
            max_duration,
            protect,
            lease_timeout,
        })
    }
}

/// `[ledger]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    /// The key that seals every decision record (HMAC-SHA256), created 0600 on first
    /// start. Every process that writes or reads decisions needs the same file: `up`,
    /// `control`, `token create`, `audit`. Default: "<store.path>/ledger.key".
    pub key_file: Option<String>,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[node]`
    #[serde(default)]
    pub node: RawNode,
    /// `[[assets]]`
    #[serde(default)]
    pub assets: Vec<RawAsset>,
    /// `[scope]`
    #[serde(default)]
    pub scope: RawScope,
    /// `[scan]`
    #[serde(default)]
    pub scan: RawScan,
    /// `[schedule]`
    #[serde(default)]
    pub schedule: RawSchedule,
    /// `[projection]`
    #[serde(default)]
    pub projection: RawProjection,
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[api]`
    #[serde(default)]
    pub api: RawApi,
    /// `[service]` (tasks 3 and 5)
    #[serde(default)]
    pub service: service::RawService,
    /// `[kafka]` (scale-out roles)
    #[serde(default)]
    pub kafka: scaleout::RawKafka,
    /// `[clickhouse]` (scale-out roles)
    #[serde(default)]
    pub clickhouse: scaleout::RawClickHouse,
    /// `[probe]` (probe nodes)
    #[serde(default)]
    pub probe: scaleout::RawProbe,
    /// `[projector]` (projectors)
    #[serde(default)]
    pub projector: scaleout::RawProjector,
    /// `[alerts]` (the notification policy)
    #[serde(default)]
    pub alerts: alerts::RawAlerts,
    /// `[[channels]]` (where notifications go)
    #[serde(default)]
    pub channels: Vec<alerts::RawChannel>,
    /// `[auth]`
    #[serde(default)]
    pub auth: RawAuth,
    /// `[approvals]`
    #[serde(default)]
    pub approvals: alerts::RawApprovals,
    /// `[control]`
    #[serde(default)]
    pub control: RawControl,
    /// `[ledger]`
    #[serde(default)]
    pub ledger: RawLedger,
}

/// Where the config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file.
    File(PathBuf),
    /// No file: the built-in loopback demo.
    Demo,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Origin.
    pub source: ConfigSource,
    /// Probe node name.
    pub node: String,
    /// Assets.
    pub assets: Vec<Asset>,
    /// Scope built from the assets.
    pub scope: Scope,
    /// Scan settings.
    pub scan: ScanSettings,
    /// Cadence of each enabled task.
    pub schedule: BTreeMap<Task, Duration>,
    /// How long one chunk of a pass should take at a node's rate (`[schedule]
    /// chunk_target`).
    pub chunk_target: Duration,
    /// Fold tuning.
    pub projection: FoldConfig,
    /// State directory.
    pub store_path: PathBuf,
    /// API address.
    pub api_listen: SocketAddr,
    /// The API server's limits and TLS.
    pub api: ApiSettings,
    /// Kafka, ClickHouse, probe node and projector settings (scale-out roles).
    pub scaleout: ScaleOut,
    /// Service and admin panel detection.
    pub service: service::ServiceSettings,
    /// The notification policy and channels.
    pub alerts: alerts::AlertSettings,
    /// Reads need no token.
    pub anonymous_read: bool,
    /// Admins may issue tokens for other existing users (`[auth]`).
    pub admin_may_issue_for_others: bool,
    /// Failed authentications allowed a minute (`[auth]`).
    pub auth_failures_per_minute: u32,
    /// Active control.
    pub control: ControlSettings,
    /// Most addresses one approval may name.
    pub approvals_max_addresses: u64,
    /// The ledger's key (`[ledger] key_file`), if set; else in the store's directory.
    pub ledger_key_file: Option<PathBuf>,
}

impl Config {
    /// What the scheduler is told: the scope, the port lists, the rate, the
    /// cadences and the chunk size.
    pub fn schedule_settings(&self) -> portwatch_work::schedule::Settings {
        portwatch_work::schedule::Settings {
            scope: self.scope.clone(),
            liveness_ports: self.scan.liveness_ports.clone(),
            high_risk_ports: self.scan.high_risk_ports.clone(),
            rate: f64::from(self.scan.rate.get()),
            redetect_after: self.service.redetect_after,
            cadences: self.schedule.clone(),
            chunk_target: self.chunk_target,
        }
    }

    /// The assets, for lookups (owner, system, zone of an address).
    pub fn asset_map(&self) -> Assets {
        Assets::new(self.assets.clone())
    }

    /// Load `path`, or the built-in demo config when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::parse(&text, ConfigSource::File(path.to_path_buf()))
            }
            None => Self::parse(DEFAULT_TOML, ConfigSource::Demo),
        }
    }

    /// Parse and validate TOML text.
    pub fn parse(text: &str, source: ConfigSource) -> Result<Config, ConfigError> {
        let origin = match &source {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Demo => "built-in defaults".to_string(),
        };
        let raw = parse_raw(text, &origin)?;
        raw.validate(source, &origin)
    }

    /// The deployment's journal of decisions, sealed with the ledger's key (made on
    /// first use): `inner` is the embedded log or the Kafka topic.
    pub fn sealed(
        &self,
        inner: std::sync::Arc<dyn portwatch_ingest::Journal>,
    ) -> anyhow::Result<std::sync::Arc<dyn portwatch_ingest::Journal>> {
        let key = portwatch_ledger::Key::load_or_create(&self.ledger_key_path())?;
        Ok(portwatch_ledger::Sealed::wrap(inner, key))
    }

    /// The ledger's key file: `[ledger] key_file`, or `ledger.key` in the store's
    /// directory (which `--data` moves).
    pub fn ledger_key_path(&self) -> PathBuf {
        self.ledger_key_file
            .clone()
            .unwrap_or_else(|| self.store_path.join("ledger.key"))
    }

    /// The embedded event log's file.
    pub fn events_path(&self) -> PathBuf {
        self.store_path.join("events.db")
    }

    /// The database file of the projected state.
    pub fn state_path(&self) -> PathBuf {
        self.store_path.join("state.db")
    }
}

fn parse_raw(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| format!(" line {}", text[..s.start.min(text.len())].lines().count().max(1)))
            .unwrap_or_default()
    };
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        line: line_of(e.span()),
        key: String::new(),
        message: e.message().trim().to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        ConfigError::Parse {
            origin: origin.to_string(),
            line: line_of(inner.span()),
            key: if path == "." || path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            },
            message: inner.message().trim().replace('\n', " "),
        }
    })
}

impl RawConfig {
    /// Apply defaults and check every value.
    pub fn validate(self, source: ConfigSource, origin: &str) -> Result<Config, ConfigError> {
        let at = Origin(origin);
        let invalid = |key: &str, value: &str, reason: &str| at.invalid(key, value, reason);

        let node = match self.node.name {
            Some(name) if name.trim().is_empty() => {
                return Err(invalid("node.name", "\"\"", "must not be empty"))
            }
            Some(name) => name,
            None => default_node_name(),
        };
        let (assets, scope) = assets::validate(self.assets, self.scope, &at)?;
        let scan = self.scan.validate(&at)?;
        let schedule::ScheduleSettings {
            cadences: schedule,
            chunk_target,
        } = self.schedule.validate(&at)?;

        let close_after_misses = match self.projection.close_after_misses {
            None => DEFAULT_CLOSE_AFTER_MISSES,
            Some(n) if !(1..=100).contains(&n) => {
                return Err(invalid(
                    "projection.close_after_misses",
                    &n.to_string(),
                    "must be between 1 and 100",
                ))
            }
            Some(n) => n as u32,
        };

        let store_path = PathBuf::from(self.store.path.unwrap_or_else(|| DEFAULT_STORE_PATH.to_string()));
        let listen_text = self.api.listen.unwrap_or_else(|| DEFAULT_API_LISTEN.to_string());
        let api_listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "api.listen",
                &format!("{listen_text:?}"),
                "expected IP:PORT, e.g. 127.0.0.1:7678",
            )
        })?;

        let timeout = |key: &str, value: Option<String>, default: &str| {
            let text = value.unwrap_or_else(|| default.to_string());
            parse_duration(&text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid(key, &format!("{text:?}"), "a duration such as 10s"))
        };
        let api = ApiSettings {
            header_timeout: timeout("api.header_timeout", self.api.header_timeout, "10s")?,
            request_timeout: timeout("api.request_timeout", self.api.request_timeout, "30s")?,
            max_connections: match self.api.max_connections {
                Some(0) => return Err(invalid("api.max_connections", "0", "at least 1")),
                Some(n) => n,
                None => 256,
            },
            tls: match (self.api.tls_cert, self.api.tls_key) {
                (None, None) => None,
                (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
                (Some(c), None) => {
                    return Err(invalid(
                        "api.tls_key",
                        "(missing)",
                        &format!("tls_cert {c:?} needs its key"),
                    ))
                }
                (None, Some(k)) => {
                    return Err(invalid(
                        "api.tls_cert",
                        "(missing)",
                        &format!("tls_key {k:?} needs its certificate"),
                    ))
                }
            },
        };

        let service = self.service.validate(origin, &scan.high_risk_ports)?;
        let scaleout = scaleout::RawScaleOut {
            kafka: self.kafka,
            clickhouse: self.clickhouse,
            probe: self.probe,
            projector: self.projector,
        }
        .validate(origin)?;
        let ledger_key_file = match self.ledger.key_file {
            Some(f) if f.trim().is_empty() => {
                return Err(at.invalid("ledger.key_file", "\"\"", "a file path"))
            }
            Some(f) => Some(PathBuf::from(f)),
            None => None,
        };
        let approvals_max_addresses = match self.approvals.max_addresses {
            Some(0) => return Err(at.invalid("approvals.max_addresses", "0", "at least 1")),
            Some(n) => n,
            None => 256,
        };
        let alerts = alerts::validate(self.alerts, self.channels, self.approvals, &node, &at)?;

        Ok(Config {
            source,
            node,
            assets,
            scope,
            scan,
            schedule,
            chunk_target,
            projection: FoldConfig {
                close_after_misses,
                policy: service.policy.clone(),
                ..FoldConfig::default()
            },
            store_path,
            api_listen,
            api,
            scaleout,
            service,
            alerts,
            anonymous_read: self.auth.anonymous_read.unwrap_or(false),
            admin_may_issue_for_others: self.auth.admin_may_issue_for_others.unwrap_or(false),
            auth_failures_per_minute: match self.auth.failures_per_minute {
                Some(0) => return Err(invalid("auth.failures_per_minute", "0", "at least 1")),
                Some(n) => n,
                None => 10,
            },
            control: self.control.validate(&at)?,
            approvals_max_addresses,
            ledger_key_file,
        })
    }
}

/// The file (or "built-in defaults") a config came from, for errors that name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a>(pub(crate) &'a str);

impl Origin<'_> {
    /// `key = value` is refused, and why.
    pub(crate) fn invalid(&self, key: &str, value: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: self.0.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Parse a human duration ("10m", "1h30m", "1500ms").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration: {e}"))
}

pub(crate) fn strip_prefix(message: &str) -> String {
    // "invalid target `x`: reason" -> "reason" (the key and value are said already).
    message
        .split_once(": ")
        .map_or(message.to_string(), |(_, r)| r.to_string())
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, ConfigSource::File("test.toml".into()))
    }

    const MINIMAL: &str = "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.0.2/32\"\n";

    #[test]
    fn built_in_defaults_parse_and_are_the_documented_values() {
        let cfg = Config::load(None).expect("defaults");
        assert_eq!(cfg.source, ConfigSource::Demo);
        assert_eq!(cfg.assets.len(), 1);
        assert_eq!(cfg.assets[0].net.to_string(), "127.0.0.1/32");
        assert_eq!(cfg.scan.rate.get(), DEFAULT_RATE);
        assert_eq!(cfg.scan.timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.scan.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(cfg.projection.close_after_misses, DEFAULT_CLOSE_AFTER_MISSES);
        assert_eq!(cfg.api_listen.to_string(), DEFAULT_API_LISTEN);
        assert_eq!(
            cfg.schedule.get(&Task::HighRiskPorts),
            Some(&Duration::from_secs(600))
        );
        assert_eq!(cfg.scope.max_targets(), DEFAULT_MAX_TARGETS);
    }

    #[test]
    fn minimal_file_gets_named_defaults_and_no_schedule() {
        let cfg = parse(MINIMAL).expect("minimal");
        assert!(cfg.schedule.is_empty());
        assert_eq!(cfg.assets[0].zone, DEFAULT_ZONE);
        assert_eq!(cfg.store_path, PathBuf::from(DEFAULT_STORE_PATH));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&format!("{MINIMAL}[schedule]\nfull_portz = \"1h\"\n")).expect_err("unknown");
        let msg = err.to_string();
        assert!(msg.contains("full_portz"), "{msg}");
        assert!(msg.contains("schedule"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let cases = [
            (
                "[[assets]]\ncidr = \"10.0.0.300/24\"\n",
                "assets[0].cidr = \"10.0.0.300/24\"",
            ),
            (
                "[[assets]]\ncidr = \"10.1.0.0/16\"\n",
                "overlaps the reserved range 10.0.0.0/8 (private (RFC 1918))",
            ),
            (
                "[[assets]]\ncidr = \"8.8.8.0/24\"\n[scope]\nexclude = [\"x\"]\n",
                "scope.exclude[0] = \"x\"",
            ),
            (
                "[[assets]]\ncidr = \"8.8.8.0/24\"\n[scan]\nmax_rate = 100\nrate = 200\n",
                "scan.rate = 200: must be between 1 and scan.max_rate = 100",
            ),
            (
                &format!("{MINIMAL}[schedule]\nfull_ports = \"10x\"\n"),
                "schedule.full_ports = \"10x\"",
            ),
            (
                &format!("{MINIMAL}[scan]\nhigh_risk_ports = \"22,70000\"\n"),
                "port 70000 is out of range",
            ),
            (&format!("{MINIMAL}[scan]\nrate = 0\n"), "scan.rate = 0"),
            (
                &format!("{MINIMAL}[api]\nlisten = \"nowhere\"\n"),
                "api.listen = \"nowhere\"",
            ),
            (
                &format!("{MINIMAL}[projection]\nclose_after_misses = 0\n"),
                "projection.close_after_misses = 0",
            ),
            ("", "at least one [[assets]]"),
            (&format!("{MINIMAL}[scan]\nrate = \"fast\"\n"), "scan.rate"),
            (
                &format!("{MINIMAL}[service]\ntimeout = \"5ms\"\n"),
                "service.timeout = \"5ms\"",
            ),
            (
                &format!("{MINIMAL}[service]\nparallel = 0\n"),
                "service.parallel = 0",
            ),
            (
                &format!("{MINIMAL}[service]\nconcurrency = 99999\n"),
                "service.concurrency = 99999",
            ),
            (
                &format!("{MINIMAL}[service]\nhigh_risk_services = [\"my sql\"]\n"),
                "service.high_risk_services = \"my sql\"",
            ),
            (
                &format!("{MINIMAL}[service]\npanel_rules = [\"/nonexistent/panels.toml\"]\n"),
                "service.panel_rules = \"/nonexistent/panels.toml\"",
            ),
            (
                &format!("{MINIMAL}[service]\nnmap_service_probes = \"/nonexistent/probes\"\n"),
                "service.nmap_service_probes = \"/nonexistent/probes\"",
            ),
            (
                &format!("{MINIMAL}[service]\nredetect_after = \"5s\"\n"),
                "service.redetect_after = \"5s\"",
            ),
        ];
        for (text, needle) in cases {
            let msg = parse(text).expect_err(needle).to_string();
            assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn off_disables_a_task() {
        let cfg = parse(&format!(
            "{MINIMAL}[schedule]\nliveness = \"off\"\nfull_ports = \"2s\"\n"
        ))
        .expect("cfg");
        assert_eq!(
            cfg.schedule.keys().copied().collect::<Vec<_>>(),
            vec![Task::FullPorts]
        );
    }
}
