//! How the scale-out roles reach their servers safely: `[kafka]`'s TLS and SASL keys
//! and `[clickhouse] ca_file`. Every file is read and checked here, at start, so a
//! missing key file or a CA bundle that holds no certificate is an error naming the
//! key and the path, not a failed handshake minutes later. Secrets are read from
//! files only; the librdkafka properties that would carry them in the config file
//! are refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use portwatch_ingest::{Mechanism, Protocol, Sasl, Security};

use super::{ConfigError, Origin};

fn shown(path: &str) -> String {
    format!("{path:?}")
}

fn read(at: &Origin<'_>, key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| at.invalid(key, &shown(path), &e.to_string()))
}

/// The PEM bundle of certificates at `path` (a CA, or a client's chain), checked.
pub(super) fn certificates(at: &Origin<'_>, key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let pem = read(at, key, path)?;
    portwatch_trust::parse_pem(&pem).map_err(|e| at.invalid(key, &shown(path), &e.to_string()))?;
    Ok(pem)
}

fn private_key(at: &Origin<'_>, key: &str, path: &str) -> Result<PathBuf, ConfigError> {
    let pem = String::from_utf8_lossy(&read(at, key, path)?).into_owned();
    if pem.contains("ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(at.invalid(
            key,
            &shown(path),
            "the key is encrypted; portwatch reads no key password from its config: store the key unencrypted, readable by portwatch only",
        ));
    }
    if !pem.contains("PRIVATE KEY-----") {
        return Err(at.invalid(key, &shown(path), "no PEM private key in the file"));
    }
    Ok(PathBuf::from(path))
}

/// A password or other secret: the file's text without surrounding whitespace.
pub(super) fn secret(at: &Origin<'_>, key: &str, path: &str) -> Result<String, ConfigError> {
    let bytes = read(at, key, path)?;
    let text = String::from_utf8(bytes).map_err(|_| at.invalid(key, &shown(path), "not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(at.invalid(key, &shown(path), "the file is empty"));
    }
    Ok(text.to_string())
}

/// `[kafka]`'s security keys as written.
pub(super) struct KafkaKeys<'a> {
    pub security_protocol: &'a Option<String>,
    pub sasl_mechanism: &'a Option<String>,
    pub sasl_username: &'a Option<String>,
    pub sasl_password_file: &'a Option<String>,
    pub ssl_ca_file: &'a Option<String>,
    pub ssl_cert_file: &'a Option<String>,
    pub ssl_key_file: &'a Option<String>,
}

/// `[kafka]`'s security keys, checked together.
pub(super) fn kafka(at: &Origin<'_>, k: &KafkaKeys<'_>) -> Result<Security, ConfigError> {
    let protocol = match &k.security_protocol {
        None => Protocol::default(),
        Some(text) => Protocol::parse(text).ok_or_else(|| {
            at.invalid(
                "kafka.security_protocol",
                &format!("{text:?}"),
                &format!("expected one of {}", Protocol::NAMES.join(", ")),
            )
        })?,
    };
    let sasl_keys = [
        ("kafka.sasl_mechanism", k.sasl_mechanism.is_some()),
        ("kafka.sasl_username", k.sasl_username.is_some()),
        ("kafka.sasl_password_file", k.sasl_password_file.is_some()),
    ];
    let tls_keys = [
        ("kafka.ssl_ca_file", k.ssl_ca_file.is_some()),
        ("kafka.ssl_cert_file", k.ssl_cert_file.is_some()),
        ("kafka.ssl_key_file", k.ssl_key_file.is_some()),
    ];
    if !protocol.sasl() {
        if let Some((key, _)) = sasl_keys.iter().find(|(_, set)| *set) {
            return Err(at.invalid(
                key,
                "(set)",
                &format!("SASL is used only with kafka.security_protocol SASL_PLAINTEXT or SASL_SSL, not {protocol}"),
            ));
        }
    }
    if !protocol.tls() {
        if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
            return Err(at.invalid(
                key,
                "(set)",
                &format!("TLS is used only with kafka.security_protocol SSL or SASL_SSL, not {protocol}"),
            ));
        }
    }
    let sasl = if protocol.sasl() {
        let mechanism = match &k.sasl_mechanism {
            None => Mechanism::ScramSha512,
            Some(text) => Mechanism::parse(text).ok_or_else(|| {
                at.invalid(
                    "kafka.sasl_mechanism",
                    &format!("{text:?}"),
                    &format!("expected one of {}", Mechanism::NAMES.join(", ")),
                )
            })?,
        };
        if mechanism == Mechanism::Plain && !protocol.tls() {
            return Err(at.invalid(
                "kafka.sasl_mechanism",
                "\"PLAIN\"",
                "PLAIN over SASL_PLAINTEXT sends the password in the clear: use SASL_SSL, or a SCRAM mechanism",
            ));
        }
        let username = match k.sasl_username.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(at.invalid(
                    "kafka.sasl_username",
                    "(missing)",
                    &format!("kafka.security_protocol {protocol} needs a user name"),
                ))
            }
            Some(name) => name.to_string(),
        };
        let password = match &k.sasl_password_file {
            None => {
                return Err(at.invalid(
                    "kafka.sasl_password_file",
                    "(missing)",
                    &format!("kafka.security_protocol {protocol} needs the file holding the user's password"),
                ))
            }
            Some(path) => secret(at, "kafka.sasl_password_file", path)?,
        };
        Some(Sasl {
            mechanism,
            username,
            password,
        })
    } else {
        None
    };
    let ca_file = match &k.ssl_ca_file {
        None => None,
        Some(path) => certificates(at, "kafka.ssl_ca_file", path).map(|_| Some(PathBuf::from(path)))?,
    };
    let (cert_file, key_file) = match (&k.ssl_cert_file, &k.ssl_key_file) {
        (None, None) => (None, None),
        (Some(cert), Some(key)) => (
            certificates(at, "kafka.ssl_cert_file", cert).map(|_| Some(PathBuf::from(cert)))?,
            Some(private_key(at, "kafka.ssl_key_file", key)?),
        ),
        (Some(_), None) => {
            return Err(at.invalid(
                "kafka.ssl_key_file",
                "(missing)",
                "kafka.ssl_cert_file needs its private key",
            ))
        }
        (None, Some(_)) => {
            return Err(at.invalid(
                "kafka.ssl_cert_file",
                "(missing)",
                "kafka.ssl_key_file needs its certificate",
            ))
        }
    };
    Ok(Security {
        protocol,
        sasl,
        ca_file,
        cert_file,
        key_file,
    })
}

/// `[kafka.client]` and `[kafka.consumer]`: pass-through properties, except those
/// the typed keys own.
pub(super) fn pass_through(
    at: &Origin<'_>,
    table: &str,
    props: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let props = props.unwrap_or_default();
    for key in props.keys() {
        if let Some(why) = Security::owned_property(key) {
            return Err(at.invalid(&format!("{table}.{key:?}"), "(set)", why));
        }
    }
    Ok(props)
}

/// `[clickhouse] ca_file`: only with an https:// URL.
pub(super) fn clickhouse_ca(
    at: &Origin<'_>,
    url: &str,
    ca_file: Option<&str>,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    if !url.starts_with("https://") {
        return Err(at.invalid(
            "clickhouse.ca_file",
            &shown(path),
            "a CA is used only with an https:// clickhouse.url",
        ));
    }
    certificates(at, "clickhouse.ca_file", path).map(|_| Some(PathBuf::from(path)))
}
