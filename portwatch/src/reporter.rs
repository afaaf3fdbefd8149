//! The report's figures where Prometheus and the dashboards read them, the same in
//! both deployments: every [`EVERY`] the episodes' figures are computed, the same
//! computation `/api/v1/report` serves from (the deployment's read model and the
//! journal's decisions), the per-risk-class gauges on `/metrics` are set, and (scale-out) the
//! episodes whose figures changed are written to ClickHouse's `episode_reports`, and
//! the notifications whose deliveries changed to `deliveries`.
//!
//! Gauges, each labelled `risk`:
//! - `portwatch_exposures_unremediated`: exposures open now and neither approved nor
//!   blocked: the convergence figure;
//! - `portwatch_exposure_episodes`: exposures opened in the last [`WINDOW_DAYS`] days;
//! - `portwatch_mttd_seconds`, `portwatch_time_to_notify_seconds`,
//!   `portwatch_mttr_seconds`: their mean detection bound, time to notify and time to
//!   remediate (NaN while none has one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use portwatch_api::report::Figures;
use portwatch_events::{RiskClass, Timestamp};
use portwatch_projections::report::{aggregate, By, EpisodeReport, Group};
use portwatch_projections::NotificationRecord;
use portwatch_stores::ClickHouseStore;
use tokio::sync::watch;

/// How often the figures are recomputed.
pub const EVERY: Duration = Duration::from_secs(10);

/// The period the mean gauges cover.
pub const WINDOW_DAYS: i64 = 30;

/// Set the gauges from every episode's figures at `now`.
pub fn set_gauges(reports: &[EpisodeReport], now: Timestamp) {
    let by_risk = |groups: Vec<Group>| -> HashMap<String, Group> {
        groups.into_iter().map(|g| (g.key.clone(), g)).collect()
    };
    let ever = by_risk(aggregate(
        reports,
        By::Risk,
        Timestamp::MIN_UTC,
        now + chrono::Duration::days(1),
    ));
    let recent = by_risk(aggregate(
        reports,
        By::Risk,
        now - chrono::Duration::days(WINDOW_DAYS),
        now + chrono::Duration::days(1),
    ));
    for risk in RiskClass::ALL {
        let label = risk.as_str();
        let ever = ever.get(label);
        let recent = recent.get(label);
        let mean = |f: fn(&Group) -> Option<f64>| recent.and_then(f).unwrap_or(f64::NAN);
        metrics::gauge!("portwatch_exposures_unremediated", "risk" => label)
            .set(ever.map_or(0, |g| g.open) as f64);
        metrics::gauge!("portwatch_exposure_episodes", "risk" => label)
            .set(recent.map_or(0, |g| g.episodes) as f64);
        metrics::gauge!("portwatch_mttd_seconds", "risk" => label).set(mean(|g| g.mttd_mean_secs));
        metrics::gauge!("portwatch_time_to_notify_seconds", "risk" => label)
            .set(mean(|g| g.notify_mean_secs));
        metrics::gauge!("portwatch_mttr_seconds", "risk" => label).set(mean(|g| g.mttr_mean_secs));
    }
}

/// The episodes whose figures differ from what was written last.
fn changed<'a>(
    reports: &'a [EpisodeReport],
    written: &HashMap<String, EpisodeReport>,
) -> Vec<&'a EpisodeReport> {
    reports
        .iter()
        .filter(|r| written.get(&r.episode_id) != Some(*r))
        .collect()
}

/// Recompute every [`EVERY`] until `stop`; with `sink`, keep `episode_reports` and
/// `deliveries` up to date (a failed write is tried again at the next pass).
pub async fn run(
    figures: Arc<Figures>,
    ledger: portwatch_ledger::Handle,
    sink: Option<ClickHouseStore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut written: HashMap<String, EpisodeReport> = HashMap::new();
    let mut told: HashMap<String, NotificationRecord> = HashMap::new();
    let mut ver = 0u64;
    // Versions grow even if the clock steps back.
    let mut next_ver = move || {
        ver = ver.max(Utc::now().timestamp_millis().max(0) as u64) + 1;
        ver
    };
    loop {
        match figures.refresh().await {
            Ok(reports) => {
                set_gauges(&reports, Utc::now());
                if let Some(store) = &sink {
                    let fresh: Vec<EpisodeReport> =
                        changed(&reports, &written).into_iter().cloned().collect();
                    if !fresh.is_empty() {
                        match store.write_episode_reports(&fresh, next_ver()).await {
                            Ok(()) => written.extend(fresh.into_iter().map(|r| (r.episode_id.clone(), r))),
                            Err(e) => {
                                tracing::warn!(error = %e, "episode figures not written; next pass retries")
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "report figures not computed; next pass retries"),
        }
        if let Some(store) = &sink {
            let fresh: Vec<NotificationRecord> = {
                ledger
                    .read()
                    .ledger()
                    .notifications()
                    .iter()
                    .filter(|r| !r.deliveries.is_empty() && told.get(&r.notification.id) != Some(*r))
                    .cloned()
                    .collect()
            };
            if !fresh.is_empty() {
                match store.write_deliveries(&fresh, next_ver()).await {
                    Ok(()) => told.extend(fresh.into_iter().map(|r| (r.notification.id.clone(), r))),
                    Err(e) => tracing::warn!(error = %e, "deliveries not written; next pass retries"),
                }
            }
        }
        if !crate::roles::pause(&mut stop, EVERY).await {
            return;
        }
    }
}

/// How often the plan is made again for the log and `/metrics`.
pub const PLAN_EVERY: Duration = Duration::from_secs(60);

/// Make the plan every [`PLAN_EVERY`] (and at once) until `stop`: its gauges on
/// `/metrics` (`portwatch_plan_*`), and each warning logged when it appears.
pub async fn plan(ctx: portwatch_api::ApiContext, mut stop: watch::Receiver<bool>) {
    let mut announcer = portwatch_work::Announcer::default();
    loop {
        match portwatch_api::plan::current(&ctx, None).await {
            Ok(plan) => announcer.publish(&plan),
            Err(err) => tracing::warn!(error = %err, "cannot make the plan now; trying again in a minute"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PLAN_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portwatch_events::Proto;

    fn report(id: &str, mttr: Option<i64>) -> EpisodeReport {
        EpisodeReport {
            episode_id: id.into(),
            ip: "10.0.0.1".parse().expect("ip"),
            proto: Proto::Tcp,
            port: 6379,
            risk: RiskClass::HighRiskPort,
            owner: None,
            system: None,
            opened_at: Utc::now(),
            open: true,
            mttd_bound_secs: Some(60),
            notified_at: None,
            time_to_notify_secs: None,
            remediated_at: None,
            remedy: None,
            time_to_remediate_secs: mttr,
        }
    }

    #[test]
    fn only_changed_figures_are_written_again() {
        let a = report("a", None);
        let b = report("b", None);
        let written: HashMap<String, EpisodeReport> =
            [(a.episode_id.clone(), a.clone())].into_iter().collect();
        let mut a2 = a.clone();
        a2.time_to_remediate_secs = Some(120);
        let now = [a.clone(), b.clone()];
        assert_eq!(changed(&now, &written), [&b]);
        let later = [a2.clone(), b.clone()];
        assert_eq!(changed(&later, &written), [&a2, &b]);
    }
}
