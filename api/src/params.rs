//! Query parameters: checked once, with errors that name the parameter and value.

use std::collections::HashMap;
use std::net::IpAddr;

use portwatch_events::RiskClass;
use portwatch_projections::{Assets, PortState};
use portwatch_stores::{IpRange, PageRequest, MAX_PAGE};

use utoipa::openapi::path::ParameterIn;
use utoipa::IntoParams;

use crate::error::ApiError;

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1000;

/// The query string of one request, checked against the parameters its route knows.
#[derive(Debug)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// The query of a route whose parameters `P` documents: refuse parameters it
    /// does not name (a typo must not silently widen a query).
    pub(crate) fn of<P: IntoParams>(params: HashMap<String, String>) -> Result<Self, ApiError> {
        let known: Vec<String> = P::into_params(|| Some(ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        Self::new(params, &known)
    }

    fn new(params: HashMap<String, String>, known: &[&str]) -> Result<Self, ApiError> {
        match params.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}` (known: {})",
                known.join(", ")
            ))),
            None => Ok(Self(params)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A free-text parameter, if given and not empty.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// `by`: risk (default), owner, system or day.
    pub(crate) fn by(&self) -> Result<portwatch_projections::report::By, ApiError> {
        self.get("by")
            .unwrap_or("risk")
            .parse()
            .map_err(|e| ApiError::bad_request(format!("by {e}")))
    }

    /// `days`: the period, 1 to 366 days back from now (default 30).
    pub(crate) fn days(&self) -> Result<i64, ApiError> {
        Ok(self.number("days", 1, 366)?.unwrap_or(30))
    }

    pub(crate) fn ip(&self) -> Result<Option<IpAddr>, ApiError> {
        self.get("ip")
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("ip: `{v}` is not an IP address")))
            })
            .transpose()
    }

    /// `state` of ports: open (default), closed or all.
    pub(crate) fn port_state(&self) -> Result<Option<PortState>, ApiError> {
        match self.get("state") {
            None | Some("open") => Ok(Some(PortState::Open)),
            Some("closed") => Ok(Some(PortState::Closed)),
            Some("all") => Ok(None),
            Some(other) => Err(ApiError::bad_request(format!(
                "state: expected open, closed or all, got `{other}`"
            ))),
        }
    }

    /// A true/false parameter (`open` of episodes, `approved` of ports); absent: both.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!(
                "{name}: expected true or false, got `{other}`"
            ))),
        }
    }

    pub(crate) fn risk(&self) -> Result<Option<RiskClass>, ApiError> {
        self.get("risk")
            .map(|v| {
                v.parse()
                    .map_err(|e: String| ApiError::bad_request(format!("risk: {e}")))
            })
            .transpose()
    }

    /// `owner`: the addresses whose most specific asset that owner holds.
    pub(crate) fn owner(&self, assets: &Assets) -> Result<Option<Vec<IpRange>>, ApiError> {
        let Some(owner) = self.get("owner") else {
            return Ok(None);
        };
        if owner.trim().is_empty() {
            return Err(ApiError::bad_request("owner: must not be empty".to_string()));
        }
        Ok(Some(
            assets
                .ranges_owned_by(owner)
                .into_iter()
                .map(|(lo, hi)| IpRange { lo, hi })
                .collect(),
        ))
    }

    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        self.limit_within(DEFAULT_LIMIT, MAX_PAGE)
    }

    /// `limit`: 1 to `max`, `default` when absent.
    pub(crate) fn limit_within(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("limit: expected a number from 1 to {max}, got `{v}`"))
                }),
        }
    }

    /// A whole number from `min` to `max`.
    pub(crate) fn number(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{name}: expected a number from {min} to {max}, got `{v}`"
                        ))
                    })
            })
            .transpose()
    }

    /// `port`: 1 to 65535.
    pub(crate) fn port(&self) -> Result<Option<u16>, ApiError> {
        self.get("port")
            .map(|v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| ApiError::bad_request(format!("port: expected 1 to 65535, got `{v}`")))
            })
            .transpose()
    }

    /// `proto`: tcp or udp.
    pub(crate) fn proto(&self) -> Result<Option<portwatch_events::Proto>, ApiError> {
        self.parsed("proto")
    }

    /// A parameter whose values are the names of an enumeration (its serde names).
    pub(crate) fn parsed<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                serde_json::from_value(serde_json::Value::String(v.to_string()))
                    .map_err(|e| ApiError::bad_request(format!("{name}: `{v}`: {e}")))
            })
            .transpose()
    }

    /// `cursor`: the `X-Next-Cursor` of the previous page, as given.
    pub(crate) fn cursor(&self) -> Result<Option<&str>, ApiError> {
        match self.get("cursor") {
            None => Ok(None),
            Some(c) if !c.is_empty() && c.len() <= 512 && c.chars().all(|ch| ch.is_ascii_graphic()) => {
                Ok(Some(c))
            }
            Some(c) => Err(ApiError::bad_request(format!(
                "cursor: `{c}` is not a cursor this API gave out"
            ))),
        }
    }

    /// `limit` and `cursor` (the `X-Next-Cursor` of the previous page).
    pub(crate) fn page(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            limit: Some(self.limit()?),
            after: self.cursor()?.map(str::to_string),
        })
    }
}

// What each route's query string may hold. The handlers accept exactly these names
// (`Params::of`), and the OpenAPI document lists them from here; the values are
// parsed by `Params`, with errors that name the parameter.

/// Which ports.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StateFilter {
    /// Open now (the default).
    Open,
    /// Seen open once, closed now.
    Closed,
    /// Both.
    All,
}

/// How the report groups episodes.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GroupBy {
    /// Risk class (the default).
    Risk,
    /// The asset's owner.
    Owner,
    /// The asset's system.
    System,
    /// The UTC day the episode opened.
    Day,
}

/// Filters and paging of `GET /api/v1/ports`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PortParams {
    /// open (default), closed or all.
    #[param(inline)]
    state: Option<StateFilter>,
    /// Only this host.
    #[param(value_type = Option<String>, example = "10.1.0.7")]
    ip: Option<String>,
    /// Only this risk class.
    #[param(inline)]
    risk: Option<RiskClass>,
    /// Only addresses whose most specific asset has this owner.
    owner: Option<String>,
    /// true: only exposures an approval holds for; false: only the others (those
    /// that alert). Applied to each page after the store's filters, so a page may
    /// hold fewer rows than `limit`: follow `X-Next-Cursor` to the end.
    approved: Option<bool>,
    /// Rows per page (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

/// Filters and paging of `GET /api/v1/hosts`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct HostParams {
    /// Only this host.
    #[param(value_type = Option<String>, example = "10.1.0.7")]
    ip: Option<String>,
    /// Only addresses whose most specific asset has this owner.
    owner: Option<String>,
    /// Rows per page (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

/// Filters and paging of `GET /api/v1/episodes`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct EpisodeParams {
    /// true: open ones, false: closed ones; both when absent.
    open: Option<bool>,
    /// Only this host.
    #[param(value_type = Option<String>, example = "10.1.0.7")]
    ip: Option<String>,
    /// Only addresses whose most specific asset has this owner.
    owner: Option<String>,
    /// Rows per page (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

/// Filters and paging of `GET /api/v1/alerts`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AlertParams {
    /// Only this host.
    #[param(value_type = Option<String>, example = "10.1.0.7")]
    ip: Option<String>,
    /// Only this risk class.
    #[param(inline)]
    risk: Option<RiskClass>,
    /// Only addresses whose most specific asset has this owner.
    owner: Option<String>,
    /// Rows per page (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/jobs`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct JobParams {
    /// How many, newest first (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// `GET /api/v1/report`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ReportParams {
    /// Group by risk (default), owner, system or day.
    #[param(inline)]
    by: Option<GroupBy>,
    /// The period: episodes opened in the last N days (default 30).
    #[param(minimum = 1, maximum = 366)]
    days: Option<u32>,
}

/// Routes that take no query parameters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NoParams {}
