//! `[alerts]` (when to tell people) and `[[channels]]` (where to tell them).

use std::collections::BTreeSet;
use std::time::Duration;

use portwatch_events::{PortSet, Proto, RiskClass};
use portwatch_notify::{Channel, Route, Spec};
use portwatch_projections::{ApprovalRequest, NotifyPolicy, Severity};
use serde::Deserialize;

use super::{parse_duration, ConfigError, Origin};

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// A host's first findings wait this long for more. Default: "10s".
    pub group_wait: Option<String>,
    /// Later findings of a host go out at most this often. Default: "5m".
    pub group_interval: Option<String>,
    /// High-risk findings still open are reminded about this often. Default: "4h".
    pub repeat_interval: Option<String>,
    /// High-risk findings open this long go to the escalation channels. Default: off.
    pub escalate_after: Option<String>,
    /// A new asset's first ports are recorded without paging (unless high-risk).
    /// Default: true.
    pub baseline: Option<bool>,
}

/// `[approvals]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// Warn the owner this long before an approval expires. Default: "3d".
    pub warn_before: Option<String>,
    /// A TOML file of `[[allow]]` entries: approvals of known business services,
    /// granted on start (each bound by its service, with a fixed expiry).
    pub allow_list: Option<String>,
    /// Most addresses one approval may name (its network inside the assets).
    /// Default: 256.
    pub max_addresses: Option<u64>,
}

/// One `[[allow]]` entry of the allow-list file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    target: String,
    ports: String,
    proto: Option<String>,
    service: String,
    reason: String,
    owner: String,
    expires: String,
}

/// The allow-list file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowList {
    #[serde(default)]
    allow: Vec<RawAllow>,
}

/// Read and check the allow-list at `path`: one approval request per entry, with
/// an id derived from its content (the same entry is seeded once, however often
/// portwatch starts).
fn allow_list(path: &str, at: &Origin<'_>) -> Result<Vec<ApprovalRequest>, ConfigError> {
    let key = "approvals.allow_list";
    let text =
        std::fs::read_to_string(path).map_err(|e| at.invalid(key, &format!("{path:?}"), &e.to_string()))?;
    let list: RawAllowList = toml::from_str(&text)
        .map_err(|e| at.invalid(key, &format!("{path:?}"), &e.message().replace('\n', " ")))?;
    let mut out = Vec::new();
    for (i, raw) in list.allow.into_iter().enumerate() {
        let field = |f: &str| format!("{path}: allow[{i}].{f}");
        let bad = |f: &str, v: &str, why: &str| ConfigError::Invalid {
            origin: at.0.to_string(),
            key: field(f),
            value: format!("{v:?}"),
            reason: why.to_string(),
        };
        let net = portwatch_projections::approvals::parse_target(&raw.target)
            .map_err(|_| bad("target", &raw.target, "not an address or CIDR network"))?;
        let ports = PortSet::parse(&raw.ports).map_err(|e| bad("ports", &raw.ports, &e.reason))?;
        let proto: Proto = raw
            .proto
            .as_deref()
            .unwrap_or("tcp")
            .parse()
            .map_err(|e: String| bad("proto", raw.proto.as_deref().unwrap_or(""), &e))?;
        if raw.service.trim().is_empty() {
            return Err(bad("service", &raw.service, "name the service it serves"));
        }
        for (f, v) in [("reason", &raw.reason), ("owner", &raw.owner)] {
            if v.trim().is_empty() {
                return Err(bad(f, v, "must not be empty"));
            }
        }
        let expires_at = chrono::DateTime::parse_from_rfc3339(&raw.expires)
            .map_err(|_| {
                bad(
                    "expires",
                    &raw.expires,
                    "an RFC 3339 time, e.g. 2027-06-30T00:00:00Z",
                )
            })?
            .with_timezone(&chrono::Utc);
        use sha2::Digest;
        let digest = sha2::Sha256::digest(
            format!(
                "{net}|{}|{proto}|{}|{}",
                ports,
                raw.service,
                expires_at.to_rfc3339()
            )
            .as_bytes(),
        );
        out.push(ApprovalRequest {
            approval_id: format!("al_{}", hex::encode(&digest[..8])),
            net,
            ports,
            proto,
            service: Some(raw.service),
            reason: raw.reason,
            owner: raw.owner,
            expires_at,
        });
    }
    Ok(out)
}

/// `[[channels]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    /// Name deliveries are recorded under.
    pub name: Option<String>,
    /// webhook | slack | dingtalk | feishu | wecom | email | syslog | alertmanager
    pub kind: Option<String>,
    /// Endpoint.
    pub url: Option<String>,
    /// Signing secret (webhook, DingTalk, Feishu).
    pub secret: Option<String>,
    /// File holding the signing secret (instead of `secret`).
    pub secret_file: Option<String>,
    /// Longest wait for one attempt. Default: "10s".
    pub timeout: Option<String>,
    /// Lowest severity sent: "medium" (everything) or "high". Default: "medium".
    pub severity: Option<String>,
    /// Only notifications with an alert of these risk classes. Default: all.
    pub risk: Option<Vec<String>>,
    /// Only hosts of these owners. Default: all.
    pub owners: Option<Vec<String>>,
    /// Only hosts of these systems. Default: all.
    pub systems: Option<Vec<String>>,
    /// Only hosts in these zones. Default: all.
    pub zones: Option<Vec<String>>,
    /// The escalation route: takes escalations and only them. Default: false.
    pub escalation: Option<bool>,
    /// email: the sender address.
    pub from: Option<String>,
    /// email: the recipients.
    pub to: Option<Vec<String>>,
    /// email: the SMTP AUTH user (its password is `secret` or `secret_file`).
    pub username: Option<String>,
    /// syslog: send ArcSight CEF as the message. Default: false (plain text).
    pub cef: Option<bool>,
    /// syslog: facility number 0-23. Default: 16 (local0).
    pub facility: Option<i64>,
    /// PEM file of CA certificates to trust besides the system's (a receiver
    /// behind a private CA): HTTP kinds, alertmanager, and email over TLS.
    pub ca_file: Option<String>,
}

/// Checked `[alerts]` and `[[channels]]`.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The notification policy.
    pub policy: NotifyPolicy,
    /// The channels, in file order.
    pub channels: Vec<Channel>,
    /// Warn this long before an approval expires.
    pub warn_before: Duration,
    /// Approvals of the allow-list, granted on start.
    pub allow: Vec<ApprovalRequest>,
}

fn duration(
    at: &Origin<'_>,
    key: &str,
    value: Option<&String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.map_or(default, String::as_str);
    let d = parse_duration(text).map_err(|e| at.invalid(key, &format!("{text:?}"), &e))?;
    if d.is_zero() && key != "alerts.group_wait" {
        return Err(at.invalid(key, &format!("{text:?}"), "must be longer than zero"));
    }
    Ok(d)
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Check `[alerts]` and every `[[channels]]` entry.
pub(crate) fn validate(
    alerts: RawAlerts,
    channels: Vec<RawChannel>,
    approvals: RawApprovals,
    node: &str,
    at: &Origin<'_>,
) -> Result<AlertSettings, ConfigError> {
    let warn_before = duration(at, "approvals.warn_before", approvals.warn_before.as_ref(), "3d")?;
    let allow = match &approvals.allow_list {
        None => Vec::new(),
        Some(path) => allow_list(path, at)?,
    };
    let policy = NotifyPolicy {
        group_wait: chrono(duration(
            at,
            "alerts.group_wait",
            alerts.group_wait.as_ref(),
            "10s",
        )?),
        group_interval: chrono(duration(
            at,
            "alerts.group_interval",
            alerts.group_interval.as_ref(),
            "5m",
        )?),
        repeat_interval: chrono(duration(
            at,
            "alerts.repeat_interval",
            alerts.repeat_interval.as_ref(),
            "4h",
        )?),
        escalate_after: match &alerts.escalate_after {
            None => None,
            Some(_) => Some(chrono(duration(
                at,
                "alerts.escalate_after",
                alerts.escalate_after.as_ref(),
                "",
            )?)),
        },
        baseline: alerts.baseline.unwrap_or(true),
    };
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, raw) in channels.into_iter().enumerate() {
        let key = |k: &str| format!("channels[{i}].{k}");
        let name = raw
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| at.invalid(&key("name"), "(missing)", "every channel needs a name"))?;
        if !names.insert(name.clone()) {
            return Err(at.invalid(
                &key("name"),
                &format!("{name:?}"),
                "another channel has this name",
            ));
        }
        out.push(channel(raw, name, node, &key, at)?);
    }
    Ok(AlertSettings {
        policy,
        channels: out,
        warn_before,
        allow,
    })
}

fn channel(
    raw: RawChannel,
    name: String,
    node: &str,
    key: &dyn Fn(&str) -> String,
    at: &Origin<'_>,
) -> Result<Channel, ConfigError> {
    let expected = || format!("expected {}", portwatch_notify::kinds::names());
    let kind_name = raw
        .kind
        .clone()
        .ok_or_else(|| at.invalid(&key("kind"), "(missing)", &expected()))?;
    let kind = portwatch_notify::kinds::kind(&kind_name)
        .ok_or_else(|| at.invalid(&key("kind"), &format!("{kind_name:?}"), &expected()))?;
    let url = raw
        .url
        .clone()
        .ok_or_else(|| at.invalid(&key("url"), "(missing)", "every channel needs a url"))?;
    let parsed = url::Url::parse(&url).map_err(|e| {
        at.invalid(
            &key("url"),
            &format!("{:?}", portwatch_events::redact::url(&url)),
            &e.to_string(),
        )
    })?;
    let secret = match (&raw.secret, &raw.secret_file) {
        (Some(_), Some(_)) => {
            return Err(at.invalid(
                &key("secret_file"),
                "(set)",
                "set either secret or secret_file, not both",
            ))
        }
        (Some(s), None) => Some(s.clone()),
        (None, Some(path)) => Some(super::secure::secret(at, &key("secret_file"), path)?),
        (None, None) => None,
    };
    if secret.as_deref().is_some_and(str::is_empty) {
        return Err(at.invalid(&key("secret"), "\"\"", "must not be empty"));
    }
    let spec = Spec {
        url: &parsed,
        written: &url,
        secret: secret.as_deref(),
        username: raw.username.as_deref(),
        from: raw.from.as_deref(),
        to: raw.to.as_deref().unwrap_or_default(),
        cef: raw.cef,
        facility: raw.facility,
        node,
    };
    let sender = kind
        .build(&spec)
        .map_err(|e| at.invalid(&key(e.key), &e.value, &e.why))?;
    let timeout = duration(at, &key("timeout"), raw.timeout.as_ref(), "10s")?;
    let ca_pem = match &raw.ca_file {
        None => None,
        Some(_) if !kind.tls() => {
            return Err(at.invalid(
                &key("ca_file"),
                "(set)",
                &format!("{} channels do not use TLS", kind.name()),
            ))
        }
        Some(path) => Some(super::secure::certificates(at, &key("ca_file"), path)?),
    };
    let min_severity = match raw.severity.as_deref() {
        None | Some("medium") => Severity::Medium,
        Some("high") => Severity::High,
        Some(other) => {
            return Err(at.invalid(&key("severity"), &format!("{other:?}"), "expected medium or high"))
        }
    };
    let mut risks = Vec::new();
    for r in raw.risk.unwrap_or_default() {
        let class: RiskClass = r
            .parse()
            .map_err(|e: String| at.invalid(&key("risk"), &format!("{r:?}"), &e))?;
        risks.push(class);
    }
    Ok(Channel {
        name,
        route: Route {
            min_severity,
            risks,
            owners: raw.owners.unwrap_or_default(),
            systems: raw.systems.unwrap_or_default(),
            zones: raw.zones.unwrap_or_default(),
            escalation: raw.escalation.unwrap_or(false),
        },
        sender,
        timeout,
        ca_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<AlertSettings, ConfigError> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            alerts: RawAlerts,
            #[serde(default)]
            channels: Vec<RawChannel>,
            #[serde(default)]
            approvals: RawApprovals,
        }
        let doc: Doc = toml::from_str(text).expect("toml");
        validate(
            doc.alerts,
            doc.channels,
            doc.approvals,
            "node-1",
            &Origin("test.toml"),
        )
    }

    #[test]
    fn the_issue_example_parses_with_its_values() {
        let s = check(
            r#"
[alerts]
group_wait = "10s"
group_interval = "5m"
repeat_interval = "4h"
baseline = true

[[channels]]
name = "soc"
kind = "webhook"
url = "http://127.0.0.1:9999/hook"
secret = "change-me"
"#,
        )
        .expect("valid");
        assert_eq!(s.policy.group_wait, chrono::Duration::seconds(10));
        assert_eq!(s.policy.group_interval, chrono::Duration::minutes(5));
        assert_eq!(s.policy.repeat_interval, chrono::Duration::hours(4));
        assert!(s.policy.baseline);
        assert_eq!(s.channels.len(), 1);
        assert_eq!(s.channels[0].name, "soc");
        let sender = &s.channels[0].sender;
        assert_eq!(sender.kind(), "webhook");
        let shown = format!("{sender:?}");
        assert!(
            shown.contains("secret: Some(\"<redacted>\")"),
            "the secret is set: {shown}"
        );
        assert!(!shown.contains("change-me"), "{shown}");
    }

    #[test]
    fn every_kind_of_channel_parses() {
        let s = check(
            r#"
[[channels]]
name = "mail"
kind = "email"
url = "smtp://127.0.0.1:2525"
from = "portwatch@example.com"
to = ["soc@example.com"]

[[channels]]
name = "siem"
kind = "syslog"
url = "tcp://127.0.0.1:6514"
cef = true

[[channels]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"
severity = "high"
"#,
        )
        .expect("valid");
        let kinds: Vec<&str> = s.channels.iter().map(|c| c.sender.kind()).collect();
        assert_eq!(kinds, ["email", "syslog", "alertmanager"]);
        let syslog = &s.channels[1].sender;
        assert_eq!(syslog.target(), "Tcp 127.0.0.1:6514");
        let shown = format!("{syslog:?}");
        assert!(
            shown.contains("cef: true") && shown.contains("hostname: \"node-1\""),
            "{shown}"
        );
        assert_eq!(s.channels[2].route.min_severity, Severity::High);
    }

    #[test]
    fn an_allow_list_seeds_approvals_with_stable_ids_and_named_errors() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("allow.toml");
        std::fs::write(
            &path,
            "[[allow]]\ntarget = \"203.0.113.0/24\"\nports = \"443\"\nservice = \"https\"\nreason = \"public web front\"\nowner = \"web-team\"\nexpires = \"2027-06-30T00:00:00Z\"\n",
        )
        .expect("write");
        let text = format!("[approvals]\nallow_list = {:?}\n", path.display().to_string());
        let a = check(&text).expect("valid").allow;
        let b = check(&text).expect("valid").allow;
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].approval_id, b[0].approval_id, "stable across loads");
        assert!(a[0].approval_id.starts_with("al_"));
        assert_eq!(a[0].service.as_deref(), Some("https"));
        std::fs::write(
            &path,
            "[[allow]]\ntarget = \"203.0.113.0/24\"\nports = \"443\"\nservice = \"https\"\nreason = \"x\"\nowner = \"y\"\nexpires = \"30d\"\n",
        )
        .expect("write");
        let err = check(&text).expect_err("relative expiry").to_string();
        assert!(err.contains("allow[0].expires = \"30d\""), "{err}");
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        let cases = [
            ("[alerts]\ngroup_interval = \"soon\"\n", "alerts.group_interval = \"soon\""),
            ("[[channels]]\nname = \"a\"\nkind = \"pager\"\nurl = \"http://x\"\n", "channels[0].kind = \"pager\""),
            ("[[channels]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"ftp://x/\"\n", "channels[0].url = \"ftp://x/\""),
            ("[[channels]]\nkind = \"webhook\"\nurl = \"http://x\"\n", "channels[0].name"),
            (
                "[[channels]]\nname = \"a\"\nkind = \"slack\"\nurl = \"http://x\"\n[[channels]]\nname = \"a\"\nkind = \"slack\"\nurl = \"http://y\"\n",
                "channels[1].name = \"a\"",
            ),
            ("[[channels]]\nname = \"a\"\nkind = \"slack\"\nurl = \"http://x\"\nrisk = [\"huge\"]\n", "channels[0].risk = \"huge\""),
            ("[[channels]]\nname = \"m\"\nkind = \"email\"\nurl = \"smtp://mx\"\nfrom = \"pw@example.com\"\n", "channels[0].to = []"),
            ("[[channels]]\nname = \"m\"\nkind = \"email\"\nurl = \"http://mx\"\n", "channels[0].url = \"http://mx\""),
            (
                "[[channels]]\nname = \"m\"\nkind = \"email\"\nurl = \"smtp://mx:25?tls=opportunistic\"\nfrom = \"pw@example.com\"\nto = [\"soc@example.com\"]\nusername = \"pw\"\nsecret = \"hunter2\"\n",
                "channels[0].url = \"smtp://mx:25?tls=***\": SMTP AUTH over plain smtp://",
            ),
            (
                "[[channels]]\nname = \"d\"\nkind = \"dingtalk\"\nurl = \"ftp://oapi/robot/send?access_token=SECRET\"\n",
                "channels[0].url = \"ftp://oapi/robot/send?access_token=***\"",
            ),
            ("[[channels]]\nname = \"s\"\nkind = \"syslog\"\nurl = \"udp://siem\"\n", "channels[0].url = \"udp://siem\""),
            ("[[channels]]\nname = \"s\"\nkind = \"syslog\"\nurl = \"udp://siem:514\"\nfacility = 40\n", "channels[0].facility = 40"),
            ("[[channels]]\nname = \"s\"\nkind = \"syslog\"\nurl = \"udp://siem:514\"\nca_file = \"/etc/hostname\"\n", "channels[0].ca_file"),
            ("[[channels]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x/\"\nca_file = \"/etc/hostname\"\n", "channels[0].ca_file = \"/etc/hostname\""),
            ("[[channels]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x/\"\nca_file = \"/nonexistent.pem\"\n", "channels[0].ca_file = \"/nonexistent.pem\""),
        ];
        for (text, named) in cases {
            let err = check(text).expect_err(text).to_string();
            assert!(err.contains(named), "{err} should name {named}");
        }
    }
}
