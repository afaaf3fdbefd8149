//! Optional: nmap's `nmap-service-probes` as an extra banner matcher.
//!
//! When an operator has nmap installed and opts in (`[service]
//! nmap_service_probes = "/usr/share/nmap/nmap-service-probes"`), the `match` lines
//! of its NULL probe (what servers say first) are loaded at run time and tried on
//! banners portwatch's own matchers do not recognise. The file is read from the
//! operator's disk, never shipped with or embedded in portwatch (its license does
//! not allow that). nmap's expressions are PCRE; those the `regex` crate cannot
//! compile (look-around, back-references) are skipped and counted.

use std::path::Path;
use std::sync::OnceLock;

use regex::bytes::{Regex, RegexBuilder};

/// One usable match line.
#[derive(Debug, Clone)]
struct Rule {
    service: String,
    pattern: Regex,
    product: Option<String>,
    version: Option<String>,
}

/// What a loaded file offers.
#[derive(Debug, Clone)]
pub struct NmapMatcher {
    rules: Vec<Rule>,
    /// Lines skipped because their expression does not compile here.
    pub skipped: usize,
}

/// A result from nmap's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NmapMatch {
    /// nmap's service name.
    pub service: String,
    /// Product template, filled.
    pub product: Option<String>,
    /// Version template, filled.
    pub version: Option<String>,
}

/// The `match` lines of the NULL probe (what servers say first), without `match `.
fn null_matches(text: &str) -> impl Iterator<Item = &str> {
    let mut probe = "";
    text.lines().filter_map(move |line| {
        if let Some(rest) = line.strip_prefix("Probe ") {
            probe = rest.split_whitespace().nth(1).unwrap_or_default();
            return None;
        }
        line.strip_prefix("match ").filter(|_| probe == "NULL")
    })
}

/// nmap's file as the operator configured it: read and checked at once, its
/// expressions compiled on first use (compiling some 4,000 of them takes about a
/// second, which every command that merely loads the config should not pay).
#[derive(Debug)]
pub struct NmapSource {
    text: String,
    lines: usize,
    compiled: OnceLock<NmapMatcher>,
}

impl NmapSource {
    /// Read `path`; an error if it cannot be read or has no NULL-probe match line.
    pub fn open(path: &Path) -> Result<NmapSource, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let lines = null_matches(&text).count();
        if lines == 0 {
            return Err("no usable `match` line of the NULL probe in it".to_string());
        }
        Ok(NmapSource {
            text,
            lines,
            compiled: OnceLock::new(),
        })
    }

    /// NULL-probe match lines in the file.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// The compiled matcher (compiled by the first caller).
    pub fn matcher(&self) -> &NmapMatcher {
        self.compiled.get_or_init(|| {
            let m = NmapMatcher::parse(&self.text);
            tracing::info!(
                rules = m.len(),
                skipped = m.skipped,
                "nmap-service-probes compiled"
            );
            m
        })
    }
}

/// Split `m|expr|flags rest` (any delimiter) into (expr, flags, rest).
fn delimited(text: &str) -> Option<(&str, &str, &str)> {
    let delim = text.chars().next()?;
    let body = &text[delim.len_utf8()..];
    let end = body.find(delim)?;
    let (expr, after) = (&body[..end], &body[end + delim.len_utf8()..]);
    let flags_end = after.find(' ').unwrap_or(after.len());
    Some((expr, &after[..flags_end], after[flags_end..].trim_start()))
}

/// The `key/value/` field (`p`, `v`, ...) of a match line's version info.
fn field(info: &str, key: char) -> Option<String> {
    let mut rest = info;
    while !rest.is_empty() {
        let mut chars = rest.chars();
        let k = chars.next()?;
        let after = chars.as_str();
        if let Some(cpe) = after.strip_prefix("pe:") {
            // cpe:/.../ : skip it
            let (_, _, r) = delimited(cpe)?;
            rest = r;
            continue;
        }
        let (value, _, r) = delimited(after)?;
        if k == key {
            return Some(value.to_string());
        }
        rest = r;
    }
    None
}

impl NmapMatcher {
    /// Parse the file's text.
    pub fn parse(text: &str) -> NmapMatcher {
        let mut rules = Vec::new();
        let mut skipped = 0;
        for rest in null_matches(text) {
            let Some((service, rest)) = rest.split_once(' ') else {
                continue;
            };
            let Some(rest) = rest.strip_prefix('m') else {
                continue;
            };
            let Some((expr, flags, info)) = delimited(rest) else {
                skipped += 1;
                continue;
            };
            let pattern = RegexBuilder::new(expr)
                .case_insensitive(flags.contains('i'))
                .dot_matches_new_line(flags.contains('s'))
                .unicode(false)
                .size_limit(1 << 20)
                .build();
            match pattern {
                Ok(pattern) => rules.push(Rule {
                    service: service.to_string(),
                    pattern,
                    product: field(info, 'p'),
                    version: field(info, 'v'),
                }),
                Err(_) => skipped += 1,
            }
        }
        NmapMatcher { rules, skipped }
    }

    /// Rules loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching `banner`, its templates filled from the captures.
    pub fn identify(&self, banner: &[u8]) -> Option<NmapMatch> {
        self.rules.iter().find_map(|rule| {
            let caps = rule.pattern.captures(banner)?;
            let fill = |template: &Option<String>| {
                template.as_ref().map(|t| {
                    let mut out = t.clone();
                    for i in (1..caps.len()).rev() {
                        let value = caps
                            .get(i)
                            .map(|m| String::from_utf8_lossy(m.as_bytes()).to_string());
                        out = out.replace(&format!("${i}"), &value.unwrap_or_default());
                    }
                    out
                })
            };
            Some(NmapMatch {
                service: rule.service.clone(),
                product: fill(&rule.product).filter(|p| !p.is_empty()),
                version: fill(&rule.version).filter(|v| !v.is_empty()),
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // A made-up file in the format's shape (not nmap's data).
    const SAMPLE: &str = "\
Probe TCP NULL q||
match acme m|^ACME-(\\d[\\w.]+) ready\\r\\n| p/Acme Server/ v/$1/ cpe:/a:acme:server:$1/
match lookaround m|^(?=x)y|
Probe TCP GetRequest q|GET / HTTP/1.0\\r\\n\\r\\n|
match http m|^HTTP/1\\.1| p/Other/
";

    #[test]
    fn null_probe_matches_only() {
        let m = NmapMatcher::parse(SAMPLE);
        assert_eq!((m.len(), m.skipped), (1, 1));
        let hit = m.identify(b"ACME-4.2.1 ready\r\n").unwrap();
        assert_eq!(hit.service, "acme");
        assert_eq!(
            (hit.product.as_deref(), hit.version.as_deref()),
            (Some("Acme Server"), Some("4.2.1"))
        );
        assert!(
            m.identify(b"HTTP/1.1 200 OK\r\n").is_none(),
            "GetRequest lines are not loaded"
        );
    }

    #[test]
    fn the_installed_file_loads_when_present() {
        let path = Path::new("/usr/share/nmap/nmap-service-probes");
        if !path.exists() {
            // nmap not installed: the option is simply unavailable. CI installs it.
            assert!(std::env::var_os("CI").is_none(), "the test command installs nmap");
            return;
        }
        let source = NmapSource::open(path).unwrap();
        let m = source.matcher();
        assert_eq!(
            m.len() + m.skipped,
            source.lines(),
            "every line compiled or counted as skipped"
        );
        assert!(m.len() > 1000, "{} rules, {} skipped", m.len(), m.skipped);
    }
}
