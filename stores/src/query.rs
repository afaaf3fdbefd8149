//! What readers ask the stores for: filters and pages, the same for both stores.
//!
//! Paging is by key, never by offset: every table has a text sort key (`skey`)
//! whose order is the API's order, and a page continues after the last key of the
//! previous one. Filtering and paging happen in SQL, so a page costs the same
//! whatever the size of the table.

use std::net::IpAddr;

use portwatch_events::RiskClass;
use portwatch_projections::{Alert, Episode, HostRow, PortRow, PortState};

/// The most rows one page may hold.
pub const MAX_PAGE: usize = 10_000;

/// One page of a paged read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Most rows to return (`None`: all of them, for internal readers).
    pub limit: Option<usize>,
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<String>,
}

impl PageRequest {
    /// Every row, in order.
    pub fn all() -> Self {
        Self {
            limit: None,
            after: None,
        }
    }

    /// The first `limit` rows.
    pub fn first(limit: usize) -> Self {
        Self {
            limit: Some(limit),
            after: None,
        }
    }

    /// The SQL `LIMIT` to ask for: one more than the page, to learn whether another
    /// page follows.
    pub(crate) fn fetch_limit(&self) -> i64 {
        self.limit
            .map_or(i64::MAX, |l| l.saturating_add(1).min(i64::MAX as usize) as i64)
    }

    /// Cut the fetched rows to the page and name the next cursor.
    pub(crate) fn page<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let next = match self.limit {
            Some(limit) if items.len() > limit => {
                items.truncate(limit);
                items.last().map(key)
            }
            _ => None,
        };
        Page { items, next }
    }
}

/// Rows and the cursor of the next page, if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in key order.
    pub items: Vec<T>,
    /// Pass as [`PageRequest::after`] to read on.
    pub next: Option<String>,
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// First address.
    pub lo: IpAddr,
    /// Last address.
    pub hi: IpAddr,
}

/// Which port rows to return.
#[derive(Debug, Clone, Default)]
pub struct PortQuery {
    /// Only rows in this state.
    pub state: Option<PortState>,
    /// Only rows of this host.
    pub ip: Option<IpAddr>,
    /// Only rows of this risk class.
    pub risk: Option<RiskClass>,
    /// Only hosts inside one of these ranges (an owner's addresses); an empty list
    /// matches nothing.
    pub within: Option<Vec<IpRange>>,
}

/// Which episodes to return.
#[derive(Debug, Clone, Default)]
pub struct EpisodeQuery {
    /// Only open (`Some(true)`) or closed (`Some(false)`) episodes.
    pub open: Option<bool>,
    /// Only episodes of this host.
    pub ip: Option<IpAddr>,
    /// Only hosts inside one of these ranges.
    pub within: Option<Vec<IpRange>>,
}

/// Which alerts to return.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Only alerts about this host.
    pub ip: Option<IpAddr>,
    /// Only alerts of this risk class.
    pub risk: Option<RiskClass>,
    /// Only hosts inside one of these ranges.
    pub within: Option<Vec<IpRange>>,
}

/// Which hosts to return.
#[derive(Debug, Clone, Default)]
pub struct HostQuery {
    /// Only this host.
    pub ip: Option<IpAddr>,
    /// Only hosts inside one of these ranges.
    pub within: Option<Vec<IpRange>>,
}

/// The sort key of an address: family, then the address as fixed-width hex, so
/// that text order is address order and a CIDR is a range of keys.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("4{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("6{:032x}", u128::from(v6)),
    }
}

/// Sort key of a port row: (address, protocol, port).
pub fn port_key(row: &PortRow) -> String {
    format!("{}/{}/{:05}", ip_key(row.ip), row.proto.as_str(), row.port)
}

/// Sort key of an episode: (address, protocol, port, opening time, id).
pub fn episode_key(ep: &Episode) -> String {
    format!(
        "{}/{}/{:05}/{:020}/{}",
        ip_key(ep.ip),
        ep.proto.as_str(),
        ep.port,
        ep.opened_at.timestamp_micros().max(0),
        ep.id
    )
}

/// Sort key of a host: its address.
pub fn host_key(host: &HostRow) -> String {
    ip_key(host.ip)
}

/// Sort key of an alert: (time, id).
pub fn alert_key(alert: &Alert) -> String {
    format!("{:020}/{}", alert.at.timestamp_micros().max(0), alert.id)
}

/// The `WHERE` conditions of a read and their `?` parameters, in order. Both stores
/// build their reads from these, so a filter means the same thing in SQLite and in
/// ClickHouse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    conds: Vec<String>,
    args: Vec<String>,
}

impl Filter {
    /// `ipkey` equal to one address, or inside one of some ranges (an empty list
    /// matches nothing).
    fn ips(ip: Option<IpAddr>, within: Option<&[IpRange]>) -> Self {
        let mut f = Filter::default();
        if let Some(ip) = ip {
            f = f.and("ipkey = ?", [ip_key(ip)]);
        }
        match within {
            None => {}
            Some([]) => f = f.and("1 = 0", []),
            Some(ranges) => {
                let ors: Vec<&str> = ranges.iter().map(|_| "(ipkey >= ? AND ipkey <= ?)").collect();
                let args = ranges.iter().flat_map(|r| [ip_key(r.lo), ip_key(r.hi)]);
                f = f.and(&format!("({})", ors.join(" OR ")), args);
            }
        }
        f
    }

    fn and(mut self, cond: &str, args: impl IntoIterator<Item = String>) -> Self {
        self.conds.push(cond.to_string());
        self.args.extend(args);
        self
    }

    /// ` WHERE ... ORDER BY skey LIMIT n` for one page (after its cursor), and the
    /// parameters in order.
    pub(crate) fn page_sql(self, page: &PageRequest) -> (String, Vec<String>) {
        let f = match &page.after {
            Some(after) => self.and("skey > ?", [after.clone()]),
            None => self,
        };
        let filter = if f.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", f.conds.join(" AND "))
        };
        (
            format!("{filter} ORDER BY skey LIMIT {}", page.fetch_limit()),
            f.args,
        )
    }
}

impl PortQuery {
    pub(crate) fn filter(&self) -> Filter {
        let mut f = Filter::ips(self.ip, self.within.as_deref());
        if let Some(state) = self.state {
            f = f.and("state = ?", [state.as_str().to_string()]);
        }
        if let Some(risk) = self.risk {
            f = f.and("risk = ?", [risk.as_str().to_string()]);
        }
        f
    }
}

impl EpisodeQuery {
    /// `open_sql(true)` / `open_sql(false)` is the store's condition for open and
    /// closed episodes (the stores keep that fact in different columns).
    pub(crate) fn filter(&self, open_sql: fn(bool) -> &'static str) -> Filter {
        let f = Filter::ips(self.ip, self.within.as_deref());
        match self.open {
            Some(open) => f.and(open_sql(open), []),
            None => f,
        }
    }
}

impl HostQuery {
    pub(crate) fn filter(&self) -> Filter {
        Filter::ips(self.ip, self.within.as_deref())
    }
}

impl AlertQuery {
    pub(crate) fn filter(&self) -> Filter {
        let f = Filter::ips(self.ip, self.within.as_deref());
        match self.risk {
            Some(risk) => f.and("risk = ?", [risk.as_str().to_string()]),
            None => f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_sort_like_addresses() {
        let ips: Vec<IpAddr> = ["10.0.0.2", "10.0.0.10", "127.0.0.1", "::1", "2001:db8::1"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        let mut by_key = ips.clone();
        by_key.sort_by_key(|ip| ip_key(*ip));
        let mut by_addr = ips;
        by_addr.sort();
        assert_eq!(by_key, by_addr);
    }

    #[test]
    fn filters_are_conditions_and_parameters_in_order() {
        let q = PortQuery {
            risk: Some(RiskClass::HighRiskPort),
            within: Some(vec![IpRange {
                lo: "10.0.0.0".parse().expect("ip"),
                hi: "10.0.0.255".parse().expect("ip"),
            }]),
            ..PortQuery::default()
        };
        let (sql, args) = q.filter().page_sql(&PageRequest {
            limit: Some(5),
            after: Some("k".into()),
        });
        assert_eq!(
            sql,
            " WHERE ((ipkey >= ? AND ipkey <= ?)) AND risk = ? AND skey > ? ORDER BY skey LIMIT 6"
        );
        assert_eq!(args, ["40a000000", "40a0000ff", "high_risk_port", "k"]);
        let nothing = HostQuery {
            within: Some(Vec::new()),
            ..HostQuery::default()
        };
        assert!(nothing.filter().page_sql(&PageRequest::all()).0.contains("1 = 0"));
    }

    #[test]
    fn a_page_names_its_successor_only_when_there_is_one() {
        let req = PageRequest::first(2);
        assert_eq!(req.fetch_limit(), 3);
        let page = req.page(vec![1, 2, 3], |n| n.to_string());
        assert_eq!((page.items, page.next), (vec![1, 2], Some("2".to_string())));
        let page = req.page(vec![1, 2], |n| n.to_string());
        assert_eq!(page.next, None);
        assert_eq!(
            PageRequest::all()
                .page(vec![1, 2, 3], |n| n.to_string())
                .items
                .len(),
            3
        );
    }
}
