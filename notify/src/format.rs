//! The words of a notification, the same in every channel: a title naming the host,
//! its owner and why, and one line per alert.

use portwatch_projections::{AlertKind, Notification, NotificationKind};

/// A one-line title, e.g. `[portwatch] high: 3 new exposures on 203.0.113.7 (db-team, billing)`.
pub fn title(n: &Notification) -> String {
    let what = match n.kind {
        NotificationKind::Firing => format!("{} new finding(s)", n.alerts.len()),
        NotificationKind::Reminder => format!("{} finding(s) still open", n.alerts.len()),
        NotificationKind::Escalation => format!("{} finding(s) still open, escalated", n.alerts.len()),
        NotificationKind::Resolved => format!("{} exposure(s) closed", n.alerts.len()),
        NotificationKind::Reopened => format!(
            "{} finding(s) reopened: their approval no longer holds",
            n.alerts.len()
        ),
        NotificationKind::Expiring => format!("approval of {} finding(s) expires soon", n.alerts.len()),
    };
    let who: Vec<&str> = [n.asset.owner.as_deref(), n.asset.system.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let who = if who.is_empty() {
        "no owner on record".to_string()
    } else {
        who.join(", ")
    };
    format!("[portwatch] {}: {what} on {} ({who})", n.severity.as_str(), n.ip)
}

/// One line per alert, e.g. `6379/tcp high_risk_port: exposure opened at 2026-11-01 12:05:01 UTC`.
pub fn lines(n: &Notification) -> Vec<String> {
    n.alerts
        .iter()
        .map(|a| {
            let what = match a.kind {
                AlertKind::ExposureOpened => "exposure opened",
                AlertKind::ExposureClosed => "exposure closed",
                AlertKind::HighRiskService => "dangerous service found",
                AlertKind::HighRiskAdminPanel => "admin panel found",
            };
            format!(
                "{}/{} {}: {what} at {}",
                a.port,
                a.proto.as_str(),
                a.risk.as_str(),
                a.at.format("%Y-%m-%d %H:%M:%S UTC")
            )
        })
        .collect()
}

/// Title and lines as plain text.
pub fn text(n: &Notification) -> String {
    let mut out = title(n);
    for line in lines(n) {
        out.push('\n');
        out.push_str("- ");
        out.push_str(&line);
    }
    out
}

/// Title and lines as Markdown (DingTalk, WeCom).
pub fn markdown(n: &Notification) -> String {
    let mut out = format!("### {}\n", title(n));
    for line in lines(n) {
        out.push_str(&format!("- {line}\n"));
    }
    out
}
