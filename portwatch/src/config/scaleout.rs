//! Settings of the scale-out roles: `[kafka]`, `[clickhouse]`, `[probe]`,
//! `[projector]`. The embedded role ignores them; every key has a default that
//! matches docker-compose.yml's single-host layout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use portwatch_ingest::{KafkaSettings, Topics};
use portwatch_stores::ClickHouseSettings;
use serde::Deserialize;

use super::{parse_duration, ConfigError};

/// Default broker list.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// Default topic name prefix.
pub const DEFAULT_TOPIC_PREFIX: &str = "portwatch.";
/// Default partitions per topic.
pub const DEFAULT_PARTITIONS: u32 = 12;
/// Default ClickHouse URL.
pub const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:8123";
/// Default ClickHouse database.
pub const DEFAULT_DATABASE: &str = "portwatch";
/// Default spool limit, MiB.
pub const DEFAULT_SPOOL_MAX_MB: u64 = 256;
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Default projector consumer group.
pub const DEFAULT_GROUP: &str = "portwatch-projector";
/// Default events per projector batch.
pub const DEFAULT_BATCH: usize = 20_000;
/// Default longest wait to fill a batch.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(200);
/// Default checkpoint interval.
pub const DEFAULT_CHECKPOINT: Duration = Duration::from_secs(10);
/// Default: keep 13 months of raw observations.
pub const DEFAULT_RETENTION_MONTHS: u32 = 13;

/// `[kafka]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// `bootstrap.servers`.
    pub brokers: Option<String>,
    /// Prefix of the five topic names.
    pub topic_prefix: Option<String>,
    /// Partitions of topics created by portwatch.
    pub partitions: Option<i64>,
    /// Replication factor of topics created by portwatch.
    pub replication: Option<i64>,
    /// Produce timeout ("10s").
    pub timeout: Option<String>,
    /// How long the observations topic keeps records ("30d").
    pub observations_retention: Option<String>,
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: Option<String>,
    /// `SCRAM-SHA-512` (default), `SCRAM-SHA-256` or `PLAIN`.
    pub sasl_mechanism: Option<String>,
    /// SASL user.
    pub sasl_username: Option<String>,
    /// File holding the SASL user's password.
    pub sasl_password_file: Option<String>,
    /// PEM bundle of the CA that signed the brokers' certificates.
    pub ssl_ca_file: Option<String>,
    /// The client's certificate (mTLS), PEM.
    pub ssl_cert_file: Option<String>,
    /// The client's private key (mTLS), PEM, unencrypted.
    pub ssl_key_file: Option<String>,
    /// librdkafka properties passed through to every client (timeouts, buffers; not
    /// TLS or SASL, which have the keys above).
    pub client: Option<BTreeMap<String, String>>,
    /// librdkafka properties passed through to consumers only.
    pub consumer: Option<BTreeMap<String, String>>,
}

/// `[clickhouse]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClickHouse {
    /// HTTP URL.
    pub url: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// File holding the password (instead of `password`).
    pub password_file: Option<String>,
    /// PEM bundle of the CA that signed the server's certificate (https:// URLs).
    pub ca_file: Option<String>,
    /// Client-side schema validation (off for ClickHouse < 24).
    pub validation: Option<bool>,
    /// LZ4 on the wire.
    pub compression: Option<bool>,
    /// Months of raw observations to keep.
    pub retention_months: Option<i64>,
}

/// `[probe]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Zone of this probe node.
    pub zone: Option<String>,
    /// Spool file.
    pub spool_path: Option<String>,
    /// Spool limit in MiB.
    pub spool_max_mb: Option<i64>,
    /// Heartbeat interval.
    pub heartbeat: Option<String>,
}

/// `[projector]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProjector {
    /// Consumer group.
    pub group: Option<String>,
    /// Events per batch.
    pub batch: Option<i64>,
    /// Longest wait to fill a batch.
    pub batch_wait: Option<String>,
    /// How often checkpoints are written.
    pub checkpoint_interval: Option<String>,
}

/// Probe node settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Zone whose jobs this node takes.
    pub zone: String,
    /// Spool file (default: under the data directory).
    pub spool_path: Option<PathBuf>,
    /// Spool limit in bytes.
    pub spool_max_bytes: u64,
    /// Heartbeat interval.
    pub heartbeat: Duration,
}

/// Projector settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorSettings {
    /// Consumer group.
    pub group: String,
    /// Most events per batch.
    pub batch: usize,
    /// Longest wait to fill a batch.
    pub batch_wait: Duration,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
}

/// All scale-out settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOut {
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Produce timeout.
    pub kafka_timeout: Duration,
    /// ClickHouse.
    pub clickhouse: ClickHouseSettings,
    /// Raw observation retention in months.
    pub retention_months: u32,
    /// Probe node.
    pub probe: ProbeSettings,
    /// Projector.
    pub projector: ProjectorSettings,
}

/// The raw sections together.
#[derive(Debug, Default)]
pub struct RawScaleOut {
    /// `[kafka]`
    pub kafka: RawKafka,
    /// `[clickhouse]`
    pub clickhouse: RawClickHouse,
    /// `[probe]`
    pub probe: RawProbe,
    /// `[projector]`
    pub projector: RawProjector,
}

impl RawScaleOut {
    /// Apply defaults and check every value.
    pub fn validate(self, origin: &str) -> Result<ScaleOut, ConfigError> {
        let at = super::Origin(origin);
        let invalid = |key: &str, value: &str, reason: &str| at.invalid(key, value, reason);
        let nonempty = |key: &str, value: Option<String>, default: &str| match value {
            Some(v) if v.trim().is_empty() => Err(invalid(key, "\"\"", "must not be empty")),
            Some(v) => Ok(v.trim().to_string()),
            None => Ok(default.to_string()),
        };
        let duration = |key: &str, value: &Option<String>, default: Duration, max: Duration| match value {
            None => Ok(default),
            Some(text) => {
                let d = parse_duration(text).map_err(|r| invalid(key, &format!("{text:?}"), &r))?;
                if d.is_zero() || d > max {
                    return Err(invalid(
                        key,
                        &format!("{text:?}"),
                        &format!("must be above 0 and at most {}", humantime::format_duration(max)),
                    ));
                }
                Ok(d)
            }
        };
        let k = self.kafka;
        let security = super::secure::kafka(
            &at,
            &super::secure::KafkaKeys {
                security_protocol: &k.security_protocol,
                sasl_mechanism: &k.sasl_mechanism,
                sasl_username: &k.sasl_username,
                sasl_password_file: &k.sasl_password_file,
                ssl_ca_file: &k.ssl_ca_file,
                ssl_cert_file: &k.ssl_cert_file,
                ssl_key_file: &k.ssl_key_file,
            },
        )?;
        let brokers = nonempty("kafka.brokers", k.brokers, DEFAULT_BROKERS)?;
        let prefix = k.topic_prefix.unwrap_or_else(|| DEFAULT_TOPIC_PREFIX.to_string());
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "kafka.topic_prefix",
                &format!("{prefix:?}"),
                "topic names allow only letters, digits, '.', '_' and '-'",
            ));
        }
        let partitions = match k.partitions {
            None => DEFAULT_PARTITIONS,
            Some(n @ 1..=10_000) => n as u32,
            Some(n) => {
                return Err(invalid(
                    "kafka.partitions",
                    &n.to_string(),
                    "must be between 1 and 10000",
                ))
            }
        };
        let replication = match k.replication {
            None => 1,
            Some(n @ 1..=16) => n as u32,
            Some(n) => {
                return Err(invalid(
                    "kafka.replication",
                    &n.to_string(),
                    "must be between 1 and 16",
                ))
            }
        };
        let kafka_timeout = duration(
            "kafka.timeout",
            &k.timeout,
            Duration::from_secs(10),
            Duration::from_secs(600),
        )?;
        let observations_retention = duration(
            "kafka.observations_retention",
            &k.observations_retention,
            portwatch_ingest::kafka::DEFAULT_OBSERVATIONS_RETENTION,
            Duration::from_secs(3650 * 24 * 3600),
        )?;
        let kafka = KafkaSettings {
            brokers,
            topics: Topics::with_prefix(&prefix),
            partitions,
            replication,
            observations_retention,
            security,
            client: super::secure::pass_through(&at, "kafka.client", k.client)?,
            consumer: super::secure::pass_through(&at, "kafka.consumer", k.consumer)?,
        };

        let c = self.clickhouse;
        let url = nonempty("clickhouse.url", c.url, DEFAULT_CLICKHOUSE_URL)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "clickhouse.url",
                &format!("{:?}", portwatch_events::redact::url(&url)),
                "must be an http:// or https:// URL",
            ));
        }
        let database = nonempty("clickhouse.database", c.database, DEFAULT_DATABASE)?;
        if !database.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(invalid(
                "clickhouse.database",
                &format!("{database:?}"),
                "use letters, digits and '_' only",
            ));
        }
        let retention_months = match c.retention_months {
            None => DEFAULT_RETENTION_MONTHS,
            Some(n @ 1..=1200) => n as u32,
            Some(n) => {
                return Err(invalid(
                    "clickhouse.retention_months",
                    &n.to_string(),
                    "must be between 1 and 1200",
                ))
            }
        };
        let ca_file = super::secure::clickhouse_ca(&at, &url, c.ca_file.as_deref())?;
        let password = match (c.password, &c.password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "clickhouse.password_file",
                    "(set)",
                    "set either password or password_file, not both",
                ))
            }
            (None, Some(path)) => Some(super::secure::secret(&at, "clickhouse.password_file", path)?),
            (password, None) => password,
        };
        let clickhouse = ClickHouseSettings {
            url,
            database,
            user: c.user,
            password,
            ca_file,
            validation: c.validation.unwrap_or(false),
            compression: c.compression.unwrap_or(true),
        };

        let p = self.probe;
        let zone = nonempty("probe.zone", p.zone, super::DEFAULT_ZONE)?;
        let spool_max_bytes = match p.spool_max_mb {
            None => DEFAULT_SPOOL_MAX_MB << 20,
            Some(n @ 1..=1_048_576) => (n as u64) << 20,
            Some(n) => {
                return Err(invalid(
                    "probe.spool_max_mb",
                    &n.to_string(),
                    "must be between 1 and 1048576 MiB",
                ))
            }
        };
        let heartbeat = duration(
            "probe.heartbeat",
            &p.heartbeat,
            DEFAULT_HEARTBEAT,
            Duration::from_secs(300),
        )?;
        let probe = ProbeSettings {
            zone,
            spool_path: p.spool_path.map(PathBuf::from),
            spool_max_bytes,
            heartbeat,
        };

        let j = self.projector;
        let group = nonempty("projector.group", j.group, DEFAULT_GROUP)?;
        let batch = match j.batch {
            None => DEFAULT_BATCH,
            Some(n @ 1..=1_000_000) => n as usize,
            Some(n) => {
                return Err(invalid(
                    "projector.batch",
                    &n.to_string(),
                    "must be between 1 and 1000000",
                ))
            }
        };
        let batch_wait = duration(
            "projector.batch_wait",
            &j.batch_wait,
            DEFAULT_BATCH_WAIT,
            Duration::from_secs(60),
        )?;
        let checkpoint_interval = duration(
            "projector.checkpoint_interval",
            &j.checkpoint_interval,
            DEFAULT_CHECKPOINT,
            Duration::from_secs(3600),
        )?;
        Ok(ScaleOut {
            kafka,
            kafka_timeout,
            clickhouse,
            retention_months,
            probe,
            projector: ProjectorSettings {
                group,
                batch,
                batch_wait,
                checkpoint_interval,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigSource};

    const MINIMAL: &str =
        "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"127.0.2.0/30\"\nzone = \"a\"\n";

    fn error_of(extra: &str) -> String {
        match Config::parse(&format!("{MINIMAL}{extra}"), ConfigSource::File("t.toml".into())) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_match_the_compose_layout() {
        let cfg = Config::parse(MINIMAL, ConfigSource::File("t.toml".into())).expect("parses");
        let so = cfg.scaleout;
        assert_eq!(so.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(so.kafka.topics.observations, "portwatch.observations");
        assert_eq!(so.kafka.partitions, 12);
        assert_eq!(so.kafka.observations_retention.as_secs(), 30 * 24 * 3600);
        assert_eq!(so.clickhouse.database, "portwatch");
        assert!(
            !so.clickhouse.validation,
            "off by default: ClickHouse 18.16 cannot validate"
        );
        assert_eq!(so.probe.spool_max_bytes, 256 << 20);
        assert_eq!(so.projector.group, "portwatch-projector");
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        for (extra, key, value) in [
            ("[kafka]\npartitions = 0\n", "kafka.partitions", "0"),
            ("[kafka]\nbrokers = \" \"\n", "kafka.brokers", "\"\""),
            (
                "[kafka]\ntopic_prefix = \"a b\"\n",
                "kafka.topic_prefix",
                "\"a b\"",
            ),
            ("[kafka]\ntimeout = \"soon\"\n", "kafka.timeout", "\"soon\""),
            (
                "[kafka]\nobservations_retention = \"0s\"\n",
                "kafka.observations_retention",
                "\"0s\"",
            ),
            (
                "[clickhouse]\nurl = \"clickhouse:8123\"\n",
                "clickhouse.url",
                "\"clickhouse:8123\"",
            ),
            (
                "[clickhouse]\ndatabase = \"pw;drop\"\n",
                "clickhouse.database",
                "\"pw;drop\"",
            ),
            ("[probe]\nspool_max_mb = -1\n", "probe.spool_max_mb", "-1"),
            ("[projector]\nbatch = 0\n", "projector.batch", "0"),
            (
                "[projector]\ncheckpoint_interval = \"0s\"\n",
                "projector.checkpoint_interval",
                "\"0s\"",
            ),
        ] {
            let err = error_of(extra);
            assert!(err.contains(key) && err.contains(value), "{extra}: {err}");
        }
        let err = error_of("[kafka]\nbrokerz = \"x\"\n");
        assert!(err.contains("brokerz"), "{err}");
    }

    #[test]
    fn security_keys_are_checked_together_and_secrets_stay_out_of_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "s3cret\n").expect("password file");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").expect("empty file");
        let sasl = |extra: &str| {
            format!(
                "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"probe\"\nsasl_password_file = \"{}\"\n{extra}",
                pass.display()
            )
        };
        for (extra, key, why) in [
            ("[kafka]\nsecurity_protocol = \"TLS\"\n".to_string(), "kafka.security_protocol", "SASL_SSL"),
            ("[kafka]\nsasl_username = \"x\"\n".to_string(), "kafka.sasl_username", "not PLAINTEXT"),
            ("[kafka]\nssl_ca_file = \"/x\"\n".to_string(), "kafka.ssl_ca_file", "not PLAINTEXT"),
            (
                "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"u\"\n".to_string(),
                "kafka.sasl_password_file",
                "needs the file",
            ),
            (
                format!(
                    "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_username = \"u\"\nsasl_password_file = \"{}\"\n",
                    empty.display()
                ),
                "kafka.sasl_password_file",
                "empty",
            ),
            (
                "[kafka]\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"PLAIN\"\n".to_string(),
                "kafka.sasl_mechanism",
                "in the clear",
            ),
            (sasl("sasl_mechanism = \"GSSAPI\"\n"), "kafka.sasl_mechanism", "SCRAM-SHA-512"),
            (sasl("ssl_ca_file = \"/etc/hostname\"\n"), "kafka.ssl_ca_file", "PEM"),
            (sasl("ssl_cert_file = \"/etc/hostname\"\n"), "kafka.ssl_key_file", "needs its private key"),
            (
                "[kafka.client]\n\"sasl.password\" = \"hunter2\"\n".to_string(),
                "kafka.client.\"sasl.password\"",
                "sasl_password_file",
            ),
            (
                "[kafka.client]\n\"security.protocol\" = \"ssl\"\n".to_string(),
                "kafka.client.\"security.protocol\"",
                "kafka.security_protocol",
            ),
            (
                "[clickhouse]\nca_file = \"/etc/hostname\"\n".to_string(),
                "clickhouse.ca_file",
                "https://",
            ),
            (
                "[clickhouse]\nurl = \"https://ch:8443\"\nca_file = \"/nonexistent.pem\"\n".to_string(),
                "clickhouse.ca_file",
                "/nonexistent.pem",
            ),
        ] {
            let err = error_of(&extra);
            assert!(err.contains(key) && err.contains(why), "{extra}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let cfg = Config::parse(
            &format!("{MINIMAL}{}", sasl("")),
            ConfigSource::File("t.toml".into()),
        )
        .expect("parses");
        let sasl = cfg.scaleout.kafka.security.sasl.clone().expect("SASL");
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("probe", "s3cret")
        );
        assert!(!format!("{:?}", cfg.scaleout.kafka).contains("s3cret"));
    }
}
