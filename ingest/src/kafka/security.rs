//! Who a Kafka client says it is and whom it trusts: the `[kafka]` security keys as
//! librdkafka properties, and the first connection's refusals told apart (a wrong
//! password, a broker certificate nobody vouches for, a plaintext client at a TLS
//! listener), so that an operator reads which one it was instead of a timeout.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{kafka_err, KafkaSettings};
use crate::LogError;

/// `[kafka] security_protocol`: how the connection to the brokers is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// No TLS, no SASL (a lab or a private network only).
    #[default]
    Plaintext,
    /// TLS; with `ssl_cert_file` and `ssl_key_file` the client proves itself by
    /// certificate (mTLS).
    Ssl,
    /// SASL without TLS (the password crosses the network in the clear with PLAIN).
    SaslPlaintext,
    /// SASL inside TLS.
    SaslSsl,
}

impl Protocol {
    /// The names accepted, as Kafka spells them.
    pub const NAMES: [&'static str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

    /// Parse Kafka's name of a protocol (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether the connection is inside TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[kafka] sasl_mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// User and password as they are (use inside TLS only).
    Plain,
    /// Salted challenge-response, SHA-256.
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    ScramSha512,
}

impl Mechanism {
    /// The names accepted.
    pub const NAMES: [&'static str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

    /// Parse a mechanism's name (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Self::Plain),
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-512" => Some(Self::ScramSha512),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials. The password is read from a file and shown nowhere: `Debug`
/// prints `<redacted>` in its place.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// Mechanism.
    pub mechanism: Mechanism,
    /// User name.
    pub username: String,
    /// Password (from `sasl_password_file`).
    pub password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How every client of this process connects: protocol, SASL credentials, and the
/// files of TLS (the CA that signed the brokers' certificates; the client's own
/// certificate and key for mTLS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Security {
    /// `security_protocol`.
    pub protocol: Protocol,
    /// `sasl_mechanism`, `sasl_username`, `sasl_password_file` (SASL protocols only).
    pub sasl: Option<Sasl>,
    /// `ssl_ca_file`: PEM bundle of the CA(s) trusted for the brokers' certificates
    /// (the system's roots when absent).
    pub ca_file: Option<PathBuf>,
    /// `ssl_cert_file`: the client's certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// `ssl_key_file`: the client's private key, PEM, unencrypted.
    pub key_file: Option<PathBuf>,
}

impl Security {
    /// Set the librdkafka properties that carry these settings.
    pub(crate) fn apply(&self, cfg: &mut ClientConfig) {
        cfg.set("security.protocol", self.protocol.name().to_ascii_lowercase());
        if let Some(sasl) = &self.sasl {
            cfg.set("sasl.mechanisms", sasl.mechanism.name())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        for (key, file) in [
            ("ssl.ca.location", &self.ca_file),
            ("ssl.certificate.location", &self.cert_file),
            ("ssl.key.location", &self.key_file),
        ] {
            if let Some(path) = file {
                cfg.set(key, path.to_string_lossy());
            }
        }
    }

    /// The librdkafka properties these settings own: `[kafka.client]` may not set
    /// them (the typed key it should use instead, or why not at all).
    pub fn owned_property(key: &str) -> Option<&'static str> {
        Some(match key {
            "security.protocol" => "set kafka.security_protocol instead",
            "sasl.mechanism" | "sasl.mechanisms" => "set kafka.sasl_mechanism instead",
            "sasl.username" => "set kafka.sasl_username instead",
            "sasl.password" | "ssl.key.password" | "ssl.key.pem" | "ssl_key" | "ssl.keystore.password"
            | "sasl.oauthbearer.client.secret" => {
                "a secret does not belong in the config file: put the password in the file named by kafka.sasl_password_file, the key unencrypted in kafka.ssl_key_file (readable by portwatch only)"
            }
            "ssl.ca.location" | "ssl.ca.pem" => "set kafka.ssl_ca_file instead",
            "ssl.certificate.location" | "ssl.certificate.pem" => "set kafka.ssl_cert_file instead",
            "ssl.key.location" => "set kafka.ssl_key_file instead",
            "enable.ssl.certificate.verification" | "ssl.endpoint.identification.algorithm" => {
                "portwatch always verifies the brokers' certificates and names; trust a private CA with kafka.ssl_ca_file"
            }
            _ => return None,
        })
    }
}

/// Why the brokers turned this client away. Retrying does not help: the settings
/// must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// SASL authentication failed.
    #[error("the broker refused the SASL credentials of user {user:?} (check kafka.sasl_username and the password in kafka.sasl_password_file): {detail}")]
    Credentials {
        /// The user name tried.
        user: String,
        /// What the client library reported.
        detail: String,
    },
    /// The broker's certificate does not chain to a trusted CA.
    #[error("the broker's TLS certificate is not signed by a CA this client trusts (kafka.ssl_ca_file names the CA to trust): {detail}")]
    UntrustedBroker {
        /// What the client library reported.
        detail: String,
    },
    /// The broker closed the connection at the first request: it expects TLS (or
    /// SASL) from a client configured without.
    #[error("the broker closed the connection at the client's first request: it expects another security protocol than kafka.security_protocol = {protocol} (TLS or SASL): {detail}")]
    Protocol {
        /// The protocol this client used.
        protocol: Protocol,
        /// What the client library reported.
        detail: String,
    },
    /// TLS failed for another reason (the broker refused our certificate, no
    /// common version or cipher).
    #[error("the TLS handshake with the broker failed (kafka.ssl_cert_file and kafka.ssl_key_file are what the broker checks with mTLS): {detail}")]
    Tls {
        /// What the client library reported.
        detail: String,
    },
}

/// Tell a refusal apart from an error the client library reported, or `None` when it
/// may pass (a broker not up yet, a network fault).
pub fn classify(code: RDKafkaErrorCode, reason: &str, security: &Security) -> Option<Refusal> {
    let detail = reason.to_string();
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some(Refusal::Credentials {
                user: security
                    .sasl
                    .as_ref()
                    .map(|s| s.username.clone())
                    .unwrap_or_default(),
                detail,
            })
        }
        RDKafkaErrorCode::SSL if reason.contains("certificate verify failed") => {
            Some(Refusal::UntrustedBroker { detail })
        }
        RDKafkaErrorCode::SSL => Some(Refusal::Tls { detail }),
        // A plaintext client meets a TLS listener: librdkafka's own hint, or the
        // connection closed while the client waited for the answer to its first
        // request (ApiVersion), which a broker speaking plaintext always answers.
        RDKafkaErrorCode::BrokerTransportFailure
            if !security.protocol.tls()
                && (reason.contains("incorrect security.protocol")
                    || (reason.contains("Disconnected") && reason.contains("APIVERSION_QUERY"))) =>
        {
            Some(Refusal::Protocol {
                protocol: security.protocol,
                detail,
            })
        }
        _ => None,
    }
}

/// A client context that keeps the first refusal its connections met.
pub(crate) struct Watch {
    security: Security,
    refusal: Mutex<Option<Refusal>>,
}

impl Watch {
    fn keep(&self, code: RDKafkaErrorCode, reason: &str) {
        if let Some(refusal) = classify(code, reason, &self.security) {
            let mut first = self.refusal.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert(refusal);
        }
    }
}

impl ClientContext for Watch {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A connection's failure is only logged (fac FAIL); the error that follows
        // says no more than "all brokers are down".
        if fac == "FAIL" {
            self.keep(RDKafkaErrorCode::BrokerTransportFailure, message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client");
        if let Some(code) = error.rdkafka_error_code() {
            self.keep(code, reason);
        }
    }
}

impl ConsumerContext for Watch {}

/// What the brokers answered the first connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    /// portwatch's topics this client does not see: missing, or not described to
    /// this user.
    pub missing: Vec<String>,
}

/// Connect as every client of this process will and ask for the cluster's topics:
/// a refusal comes back as [`LogError::Refused`] naming which one it was; a broker
/// that does not answer as [`LogError::Kafka`] (worth waiting for).
pub fn preflight(settings: &KafkaSettings, timeout: Duration) -> Result<Reachable, LogError> {
    let context = Watch {
        security: settings.security.clone(),
        refusal: Mutex::new(None),
    };
    let consumer: BaseConsumer<Watch> = settings
        .client_config()
        .create_with_context(context)
        .map_err(|e| kafka_err("creating client", e))?;
    let result = consumer.fetch_metadata(None, timeout);
    // Errors reach the context when the client is polled.
    let refused = || {
        for _ in 0..10 {
            let _ = consumer.poll(Duration::from_millis(20));
            if let Some(r) = consumer
                .context()
                .refusal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Some(r);
            }
        }
        None
    };
    match result {
        Ok(metadata) => {
            let seen: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
            let missing = settings
                .topics
                .all()
                .iter()
                .filter(|t| !seen.contains(t))
                .map(|t| (*t).to_string())
                .collect();
            Ok(Reachable { missing })
        }
        Err(err) => match refused() {
            Some(why) => Err(LogError::Refused {
                brokers: settings.brokers.clone(),
                why,
            }),
            None => Err(kafka_err("connecting", err)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_ssl() -> Security {
        Security {
            protocol: Protocol::SaslSsl,
            sasl: Some(Sasl {
                mechanism: Mechanism::ScramSha512,
                username: "probe".into(),
                password: "hunter2".into(),
            }),
            ..Security::default()
        }
    }

    #[test]
    fn names_parse_in_any_case_and_round_trip() {
        for name in Protocol::NAMES {
            assert_eq!(
                Protocol::parse(&name.to_ascii_lowercase()).map(Protocol::name),
                Some(name)
            );
        }
        for name in Mechanism::NAMES {
            assert_eq!(
                Mechanism::parse(&name.to_ascii_lowercase()).map(Mechanism::name),
                Some(name)
            );
        }
        assert_eq!(Protocol::parse("TLS"), None);
        assert_eq!(Mechanism::parse("GSSAPI"), None);
    }

    #[test]
    fn the_password_is_never_printed() {
        let text = format!("{:?}", sasl_ssl());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("probe"), "{text}");
    }

    #[test]
    fn settings_become_librdkafka_properties() {
        let mut security = sasl_ssl();
        security.ca_file = Some("/etc/pw/ca.pem".into());
        let mut cfg = ClientConfig::new();
        security.apply(&mut cfg);
        assert_eq!(cfg.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cfg.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(cfg.get("sasl.username"), Some("probe"));
        assert_eq!(cfg.get("ssl.ca.location"), Some("/etc/pw/ca.pem"));
        assert_eq!(cfg.get("ssl.key.location"), None);
    }

    #[test]
    fn refusals_are_told_apart_and_passing_faults_are_not_refusals() {
        let s = sasl_ssl();
        assert!(matches!(
            classify(RDKafkaErrorCode::Authentication, "SASL authentication error", &s),
            Some(Refusal::Credentials { user, .. }) if user == "probe"
        ));
        assert!(matches!(
            classify(
                RDKafkaErrorCode::SSL,
                "SSL handshake failed: certificate verify failed",
                &s
            ),
            Some(Refusal::UntrustedBroker { .. })
        ));
        let plain = Security::default();
        let hint = "Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)";
        assert!(matches!(
            classify(RDKafkaErrorCode::BrokerTransportFailure, hint, &plain),
            Some(Refusal::Protocol {
                protocol: Protocol::Plaintext,
                ..
            })
        ));
        assert_eq!(
            classify(
                RDKafkaErrorCode::BrokerTransportFailure,
                "Connection refused",
                &plain
            ),
            None
        );
        assert_eq!(
            classify(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down", &s),
            None
        );
    }

    #[test]
    fn owned_properties_point_to_their_keys() {
        assert!(Security::owned_property("sasl.password").is_some_and(|w| w.contains("sasl_password_file")));
        assert!(Security::owned_property("ssl.ca.location").is_some_and(|w| w.contains("ssl_ca_file")));
        assert_eq!(Security::owned_property("session.timeout.ms"), None);
    }
}
