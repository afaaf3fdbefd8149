//! `[schedule]`: the cadence of each monitoring task ("off" or absent: not run).

use std::collections::BTreeMap;
use std::time::Duration;

use portwatch_events::Task;
use serde::Deserialize;

use super::{parse_duration, ConfigError, Origin, MIN_CADENCE};

/// `[schedule]`: one key per task, a human duration or "off".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Task 0.
    pub liveness: Option<String>,
    /// Task 1.
    pub full_ports: Option<String>,
    /// Task 2.
    pub high_risk_ports: Option<String>,
    /// Task 3.
    pub service_detection: Option<String>,
    /// Task 4.
    pub port_recheck: Option<String>,
    /// Task 5.
    pub admin_panels: Option<String>,
    /// Task 6.
    pub offline_high_risk_ports: Option<String>,
    /// Task 7.
    pub offline_full_ports: Option<String>,
    /// Task 8.
    pub all_assets_full_ports: Option<String>,
}

impl RawSchedule {
    /// Every task's cadence, checked.
    pub(super) fn validate(self, at: &Origin<'_>) -> Result<BTreeMap<Task, Duration>, ConfigError> {
        let invalid = |key: &str, value: &str, reason: &str| at.invalid(key, value, reason);
        let s = &self;
        let mut schedule = BTreeMap::new();
        for (task, value) in [
            (Task::Liveness, &s.liveness),
            (Task::FullPorts, &s.full_ports),
            (Task::HighRiskPorts, &s.high_risk_ports),
            (Task::ServiceDetection, &s.service_detection),
            (Task::PortRecheck, &s.port_recheck),
            (Task::AdminPanels, &s.admin_panels),
            (Task::OfflineHighRiskPorts, &s.offline_high_risk_ports),
            (Task::OfflineFullPorts, &s.offline_full_ports),
            (Task::AllAssetsFullPorts, &s.all_assets_full_ports),
        ] {
            let Some(text) = value else { continue };
            if text.trim() == "off" {
                continue;
            }
            let key = format!("schedule.{task}");
            let d = parse_duration(text).map_err(|r| invalid(&key, &format!("{text:?}"), &r))?;
            if d < MIN_CADENCE {
                return Err(invalid(&key, &format!("{text:?}"), "must be at least 1s"));
            }
            schedule.insert(task, d);
        }
        Ok(schedule)
    }
}
