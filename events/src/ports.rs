//! Port lists such as `1-1024,3306,8000-8100` (or `-` for all), kept as sorted,
//! merged, inclusive ranges so that "all 65535 ports" costs two numbers, not 65535.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of TCP/UDP ports (1-65535). Port 0 is not a port one can probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PortSet {
    /// Sorted, non-overlapping, non-adjacent inclusive ranges.
    ranges: Vec<(u16, u16)>,
}

/// A port list that could not be parsed; names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port list `{input}`: {reason}")]
pub struct PortSetError {
    /// The whole list as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl PortSet {
    /// Every port, 1-65535.
    pub fn all() -> Self {
        Self {
            ranges: vec![(1, u16::MAX)],
        }
    }

    /// The empty set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parse `1-1024,3306,8000-8100`; `-` (or `1-65535`) means every port.
    pub fn parse(input: &str) -> Result<Self, PortSetError> {
        let fail = |reason: String| PortSetError {
            input: input.to_string(),
            reason,
        };
        let trimmed = input.trim();
        if trimmed == "-" {
            return Ok(Self::all());
        }
        if trimmed.is_empty() {
            return Err(fail("the list is empty".into()));
        }
        let parse_port = |text: &str| -> Result<u16, PortSetError> {
            let text = text.trim();
            let n: u64 = text
                .parse()
                .map_err(|_| fail(format!("`{text}` is not a port number")))?;
            if n == 0 || n > u64::from(u16::MAX) {
                return Err(fail(format!("port {n} is out of range 1-65535")));
            }
            Ok(n as u16)
        };
        let mut ranges = Vec::new();
        for part in trimmed.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(fail("empty entry between commas".into()));
            }
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => {
                    // nmap style open ends: `-1024` and `1024-`.
                    let lo = if lo.trim().is_empty() { 1 } else { parse_port(lo)? };
                    let hi = if hi.trim().is_empty() {
                        u16::MAX
                    } else {
                        parse_port(hi)?
                    };
                    if lo > hi {
                        return Err(fail(format!("range `{part}` runs backwards")));
                    }
                    (lo, hi)
                }
                None => {
                    let p = parse_port(part)?;
                    (p, p)
                }
            };
            ranges.push((lo, hi));
        }
        Ok(Self::from_ranges(ranges))
    }

    /// Build from arbitrary ranges (normalises them).
    pub fn from_ranges(mut ranges: Vec<(u16, u16)>) -> Self {
        ranges.retain(|&(lo, hi)| lo >= 1 && lo <= hi);
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => {
                    last.1 = last.1.max(hi);
                }
                _ => merged.push((lo, hi)),
            }
        }
        Self { ranges: merged }
    }

    /// Build from individual ports (0 is ignored).
    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> Self {
        Self::from_ranges(ports.into_iter().map(|p| (p, p)).collect())
    }

    /// Number of ports in the set.
    pub fn len(&self) -> u32 {
        self.ranges
            .iter()
            .map(|&(lo, hi)| u32::from(hi) - u32::from(lo) + 1)
            .sum()
    }

    /// True if no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `port` is in the set (binary search over ranges).
    pub fn contains(&self, port: u16) -> bool {
        let idx = self.ranges.partition_point(|&(_, hi)| hi < port);
        self.ranges.get(idx).is_some_and(|&(lo, _)| lo <= port)
    }

    /// Whether every port of `other` is in `self`.
    pub fn is_superset(&self, other: &PortSet) -> bool {
        other.ranges.iter().all(|&(lo, hi)| {
            let idx = self.ranges.partition_point(|&(_, h)| h < lo);
            self.ranges.get(idx).is_some_and(|&(l, h)| l <= lo && hi <= h)
        })
    }

    /// The ports in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(lo, hi)| lo..=hi)
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    /// This set without the given ports.
    pub fn without(&self, ports: &[u16]) -> PortSet {
        if ports.is_empty() {
            return self.clone();
        }
        let mut sorted = ports.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = Vec::with_capacity(self.ranges.len() + sorted.len());
        for &(lo, hi) in &self.ranges {
            let mut start = u32::from(lo);
            let hi = u32::from(hi);
            for p in sorted.iter().map(|&p| u32::from(p)) {
                if p < start || p > hi {
                    continue;
                }
                if p > start {
                    out.push((start as u16, (p - 1) as u16));
                }
                start = p + 1;
            }
            if start <= hi {
                out.push((start as u16, hi as u16));
            }
        }
        PortSet { ranges: out }
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for PortSet {
    type Err = PortSetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PortSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            // The empty set serialises as "" (a scan that covered nothing).
            return Ok(PortSet::empty());
        }
        PortSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_merges_and_prints() {
        let set = PortSet::parse("8000-8100, 22,21,23,3306,8050-8200").expect("parse");
        assert_eq!(set.to_string(), "21-23,3306,8000-8200");
        assert_eq!(set.len(), 3 + 1 + 201);
        assert!(set.contains(22) && set.contains(8200) && !set.contains(8201));
        assert!(!set.contains(1) && !set.contains(65535));
    }

    #[test]
    fn dash_means_every_port() {
        let set = PortSet::parse("-").expect("parse");
        assert_eq!(set, PortSet::all());
        assert_eq!(set.len(), 65535);
        assert!(set.contains(1) && set.contains(65535));
        assert_eq!(PortSet::parse("1-").expect("open end"), PortSet::all());
    }

    #[test]
    fn bad_lists_name_the_value() {
        let err = PortSet::parse("80,70000").expect_err("70000");
        assert_eq!(
            err.to_string(),
            "invalid port list `80,70000`: port 70000 is out of range 1-65535"
        );
        assert!(PortSet::parse("0").expect_err("0").reason.contains("port 0"));
        assert!(PortSet::parse("http")
            .expect_err("word")
            .reason
            .contains("`http`"));
        assert!(PortSet::parse("90-80")
            .expect_err("backwards")
            .reason
            .contains("backwards"));
        assert!(PortSet::parse("").is_err());
        assert!(PortSet::parse("1,,2").is_err());
    }

    #[test]
    fn without_splits_ranges() {
        let set = PortSet::parse("1-10,20").expect("parse");
        assert_eq!(set.without(&[1, 5, 10, 20, 99]).to_string(), "2-4,6-9");
        assert_eq!(PortSet::all().without(&[1, 65535]).to_string(), "2-65534");
    }

    #[test]
    fn superset_and_serde() {
        let all = PortSet::all();
        let some = PortSet::parse("22,80-90").expect("parse");
        assert!(all.is_superset(&some));
        assert!(!some.is_superset(&all));
        assert!(some.is_superset(&PortSet::parse("81-85").expect("parse")));
        let json = serde_json::to_string(&some).expect("json");
        assert_eq!(json, "\"22,80-90\"");
        let back: PortSet = serde_json::from_str(&json).expect("back");
        assert_eq!(back, some);
        let empty: PortSet = serde_json::from_str("\"\"").expect("empty");
        assert!(empty.is_empty());
    }
}
