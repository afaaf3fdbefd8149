//! `[service]`: service and admin panel detection (tasks 3 and 5).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portwatch_events::PortSet;
use portwatch_probes::detect::DetectOptions;
use portwatch_probes::nmap::NmapSource;
use portwatch_probes::panels::Rules;
use portwatch_probes::service::Limits;
use portwatch_probes::web::WebLimits;
use portwatch_projections::policy::{Policy, HIGH_RISK_SERVICES};
use serde::Deserialize;

use super::{check_timeout, parse_duration, ConfigError};

/// `[service]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Longest wait for an answer per exchange. Default: "1500ms".
    pub timeout: Option<String>,
    /// Most bytes kept from one server per conversation. Default: 65536.
    pub max_bytes: Option<i64>,
    /// Protocol probes run at once against one port. Default: 8.
    pub parallel: Option<i64>,
    /// Ports examined at once. Default: 64.
    pub concurrency: Option<i64>,
    /// Services that are dangerous on any port. Default: the built-in list.
    pub high_risk_services: Option<Vec<String>>,
    /// Run the admin panel rules on web ports (task 5). Default: true.
    pub panels: Option<bool>,
    /// More panel rule files (same format as probes/panels.toml).
    pub panel_rules: Option<Vec<String>>,
    /// Path of nmap's `nmap-service-probes`, to use its banner matches as a
    /// fallback (opt-in; the file is read at run time, never shipped).
    pub nmap_service_probes: Option<String>,
    /// Identify open ports again after this long (a service can be replaced on
    /// the same port). Default: "24h".
    pub redetect_after: Option<String>,
}

/// Checked `[service]` settings.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Ports examined at once.
    pub concurrency: usize,
    /// Task 3 identifies a port again once its last detection is this old.
    pub redetect_after: Duration,
    /// Everything one port's detection needs.
    pub detect: DetectOptions,
    /// The risk policy: high-risk ports (`[scan] high_risk_ports`), high-risk
    /// services, and each service's default ports from the probe registry.
    pub policy: Arc<Policy>,
}

impl RawService {
    /// Check every key; `high_risk_ports` comes from `[scan]`.
    pub fn validate(self, origin: &str, high_risk_ports: &PortSet) -> Result<ServiceSettings, ConfigError> {
        let invalid = |key: &str, value: &str, reason: &str| ConfigError::Invalid {
            origin: origin.to_string(),
            key: format!("service.{key}"),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let timeout = match &self.timeout {
            None => Duration::from_millis(1500),
            Some(t) => check_timeout(t).map_err(|e| invalid("timeout", &format!("{t:?}"), &e))?,
        };
        let range =
            |key: &str, v: Option<i64>, default: i64, lo: i64, hi: i64| -> Result<usize, ConfigError> {
                let v = v.unwrap_or(default);
                if (lo..=hi).contains(&v) {
                    Ok(v as usize)
                } else {
                    Err(invalid(
                        key,
                        &v.to_string(),
                        &format!("must be between {lo} and {hi}"),
                    ))
                }
            };
        let max_bytes = range("max_bytes", self.max_bytes, 65_536, 1024, 16 << 20)?;
        let parallel = range("parallel", self.parallel, 8, 1, 64)?;
        let concurrency = range("concurrency", self.concurrency, 64, 1, 4096)?;
        let services = self
            .high_risk_services
            .unwrap_or_else(|| HIGH_RISK_SERVICES.iter().map(|s| s.to_string()).collect());
        if let Some(bad) = services
            .iter()
            .find(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
        {
            return Err(invalid(
                "high_risk_services",
                &format!("{bad:?}"),
                "a service name (e.g. \"redis\") without spaces",
            ));
        }
        let mut rules = Rules::builtin().map_err(|e| invalid("panel_rules", "builtin", &e.to_string()))?;
        for file in self.panel_rules.unwrap_or_default() {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid("panel_rules", &format!("{file:?}"), &format!("cannot read: {e}")))?;
            rules
                .add(&file, &text)
                .map_err(|e| invalid("panel_rules", &format!("{file:?}"), &e.to_string()))?;
        }
        let nmap = match self.nmap_service_probes {
            None => None,
            Some(path) => Some(Arc::new(
                NmapSource::open(&PathBuf::from(&path))
                    .map_err(|e| invalid("nmap_service_probes", &format!("{path:?}"), &e))?,
            )),
        };
        let redetect_after = match &self.redetect_after {
            None => Duration::from_secs(24 * 3600),
            Some(t) => parse_duration(t)
                .ok()
                .filter(|d| *d >= Duration::from_secs(60))
                .ok_or_else(|| {
                    invalid(
                        "redetect_after",
                        &format!("{t:?}"),
                        "a duration of at least 1m, e.g. \"24h\"",
                    )
                })?,
        };
        Ok(ServiceSettings {
            concurrency,
            redetect_after,
            detect: DetectOptions {
                limits: Limits {
                    connect: timeout.max(Duration::from_secs(1)),
                    read: timeout,
                    max_bytes,
                },
                web: WebLimits {
                    timeout: timeout * 2,
                    parallel,
                    ..WebLimits::default()
                },
                parallel,
                panels: self.panels.unwrap_or(true),
                rules: Arc::new(rules),
                nmap,
            },
            policy: Arc::new(Policy {
                high_risk_ports: high_risk_ports.clone(),
                high_risk_services: services,
                service_ports: portwatch_probes::service::default_port_table(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy names services as the probes report them: every high-risk service
    /// is one some probe (or HTTP API recogniser) can report, with its default ports.
    #[test]
    fn every_high_risk_service_is_a_name_the_probes_report() {
        let table = portwatch_probes::service::default_port_table();
        for service in HIGH_RISK_SERVICES {
            let ports = table.get(*service);
            assert!(
                ports.is_some_and(|p| !p.is_empty()),
                "{service} is no probe's name"
            );
        }
        let settings = RawService::default()
            .validate("test", &portwatch_projections::policy::high_risk_ports())
            .expect("defaults");
        let policy = &settings.policy;
        use portwatch_events::RiskClass;
        assert_eq!(
            policy.classify(1883, Some("mqtt"), false),
            RiskClass::HighRiskPort,
            "its own port"
        );
        assert_eq!(
            policy.classify(11883, Some("mqtt"), false),
            RiskClass::HighRiskService
        );
    }
}
