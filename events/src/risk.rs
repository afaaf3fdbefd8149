//! The brief's risk classes as a type. Which class a port has is decided by the
//! policy next to the folds (`portwatch_projections::policy`); this crate only
//! names the classes so that events, rows and alerts can carry them.

use serde::{Deserialize, Serialize};

/// The brief's risk classes, from least to most specific evidence.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskClass {
    /// Any open port: to be audited.
    RiskPort,
    /// A port of the high-risk list (a dangerous service's default port).
    HighRiskPort,
    /// A dangerous service found by fingerprinting on a port outside that list.
    HighRiskService,
    /// A web management console.
    HighRiskAdminPanel,
}

impl RiskClass {
    /// Every class, least specific first.
    pub const ALL: [RiskClass; 4] = [
        RiskClass::RiskPort,
        RiskClass::HighRiskPort,
        RiskClass::HighRiskService,
        RiskClass::HighRiskAdminPanel,
    ];

    /// The snake_case name used in events, output and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::RiskPort => "risk_port",
            RiskClass::HighRiskPort => "high_risk_port",
            RiskClass::HighRiskService => "high_risk_service",
            RiskClass::HighRiskAdminPanel => "high_risk_admin_panel",
        }
    }

    /// Every class but `risk_port` is high risk.
    pub fn is_high(self) -> bool {
        self != RiskClass::RiskPort
    }
}

impl std::fmt::Display for RiskClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RiskClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RiskClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is no risk class (known: {})",
                    RiskClass::ALL.map(|c| c.as_str()).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json_and_text() {
        for class in RiskClass::ALL {
            let json = serde_json::to_string(&class).expect("json");
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(class.as_str().parse::<RiskClass>(), Ok(class));
        }
        let err = "medium".parse::<RiskClass>().expect_err("unknown");
        assert!(
            err.contains("`medium`") && err.contains("high_risk_port"),
            "{err}"
        );
    }
}
