//! `[[assets]]` and `[scope]`: what portwatch watches, and the guard that keeps every
//! probe inside it.

use portwatch_probes::Scope;
use serde::Deserialize;

use super::{strip_prefix, Asset, ConfigError, Origin, DEFAULT_MAX_TARGETS, DEFAULT_ZONE};

/// One `[[assets]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsset {
    /// Address or CIDR network.
    pub cidr: String,
    /// Who answers for it.
    pub owner: Option<String>,
    /// Which system it belongs to.
    pub system: Option<String>,
    /// Network zone whose probe nodes reach it. Default: "default".
    pub zone: Option<String>,
}

/// `[scope]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    /// Most addresses one job may cover. Default: 65536.
    pub max_targets: Option<u64>,
    /// Networks never to probe, whatever the assets say. Default: none.
    pub exclude: Option<Vec<String>>,
    /// Accept assets in reserved ranges (private, loopback, documentation,
    /// multicast, ...). Default: false.
    pub allow_reserved: Option<bool>,
}

/// Check every asset and the scope built from them.
pub(super) fn validate(
    raw_assets: Vec<RawAsset>,
    raw_scope: RawScope,
    at: &Origin<'_>,
) -> Result<(Vec<Asset>, Scope), ConfigError> {
    let invalid = |key: &str, value: &str, reason: &str| at.invalid(key, value, reason);
    if raw_assets.is_empty() {
        return Err(invalid(
            "assets",
            "[]",
            "at least one [[assets]] entry is needed: portwatch only scans its assets",
        ));
    }
    let allow_reserved = raw_scope.allow_reserved.unwrap_or(false);
    let mut assets = Vec::with_capacity(raw_assets.len());
    for (i, raw) in raw_assets.into_iter().enumerate() {
        let key = format!("assets[{i}].cidr");
        let net = portwatch_probes::targets::parse_net(&raw.cidr)
            .map_err(|e| invalid(&key, &format!("{:?}", raw.cidr), &strip_prefix(&e.to_string())))?;
        if let (false, Some((range, what))) = (allow_reserved, portwatch_probes::reserved::overlapping(&net))
        {
            return Err(invalid(
                &key,
                &format!("{:?}", raw.cidr),
                &format!(
                    "overlaps the reserved range {range} ({what}); portwatch watches internet-facing \
                     space: set [scope] allow_reserved = true to monitor it anyway"
                ),
            ));
        }
        assets.push(Asset {
            net,
            owner: raw.owner,
            system: raw.system,
            zone: raw.zone.unwrap_or_else(|| DEFAULT_ZONE.to_string()),
        });
    }

    let max_targets = match raw_scope.max_targets {
        None => DEFAULT_MAX_TARGETS,
        Some(0) => return Err(invalid("scope.max_targets", "0", "must be at least 1")),
        Some(n) => u128::from(n),
    };
    let mut exclude = Vec::new();
    for (i, text) in raw_scope.exclude.unwrap_or_default().iter().enumerate() {
        exclude.push(portwatch_probes::targets::parse_net(text).map_err(|e| {
            invalid(
                &format!("scope.exclude[{i}]"),
                &format!("{text:?}"),
                &strip_prefix(&e.to_string()),
            )
        })?);
    }
    let scope = Scope::new(assets.iter().map(|a| a.net).collect(), max_targets).with_exclusions(exclude);
    Ok((assets, scope))
}
