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
    /// How long one chunk of a pass should take at a node's rate. Default: 30s.
    pub chunk_target: Option<String>,
}

/// Default `[schedule] chunk_target`.
pub(super) const DEFAULT_CHUNK_TARGET: Duration = Duration::from_secs(30);

/// The checked `[schedule]`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ScheduleSettings {
    /// Each running task's cadence.
    pub(super) cadences: BTreeMap<Task, Duration>,
    /// How long a chunk should take at one node's rate.
    pub(super) chunk_target: Duration,
}

impl RawSchedule {
    /// Every task's cadence and the chunk size, checked.
    pub(super) fn validate(self, at: &Origin<'_>) -> Result<ScheduleSettings, ConfigError> {
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
        let chunk_target = match &s.chunk_target {
            None => DEFAULT_CHUNK_TARGET,
            Some(text) => {
                let d = parse_duration(text)
                    .map_err(|r| invalid("schedule.chunk_target", &format!("{text:?}"), &r))?;
                if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                    return Err(invalid(
                        "schedule.chunk_target",
                        &format!("{text:?}"),
                        "must be from 1s to 1h",
                    ));
                }
                d
            }
        };
        Ok(ScheduleSettings {
            cadences: schedule,
            chunk_target,
        })
    }
}
