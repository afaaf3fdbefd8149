//! Admin panel rules: which paths to fetch and what in the answer names a web
//! management console. The rules are data ([`BUILTIN`], `probes/panels.toml`),
//! written for portwatch; operators add their own files in the same format.
//!
//! A rule matches when, for one of its paths, one of its `match` alternatives holds;
//! an alternative holds when every field it sets holds: `status` (any of), `title`
//! and `body` (each text contained, case-insensitive), `header` (each named header
//! present and containing the text), `favicon` (the site's favicon hash, any of).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The rules shipped with portwatch.
pub const BUILTIN: &str = include_str!("../panels.toml");

/// How bad an exposed panel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelRisk {
    /// A management console: a high-risk admin panel.
    #[default]
    High,
    /// Worth knowing (status pages, read-only dashboards).
    Info,
}

/// One alternative of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// Status codes (any of); empty: any.
    #[serde(default)]
    pub status: Vec<u16>,
    /// Texts the page title contains (all).
    #[serde(default)]
    pub title: Vec<String>,
    /// Texts the body contains (all).
    #[serde(default)]
    pub body: Vec<String>,
    /// Headers present and containing a text (all; the text may be empty).
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    /// Favicon hashes (any of; Shodan-style MurmurHash3 of the base64 favicon).
    #[serde(default)]
    pub favicon: Vec<i32>,
}

/// One panel rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// Stable identifier (`tomcat-manager`).
    pub id: String,
    /// Product and console.
    pub name: String,
    /// What the rule matches and where that is documented or observed.
    pub cite: String,
    /// Risk when found.
    #[serde(default)]
    pub risk: PanelRisk,
    /// Paths to fetch (at most 4).
    pub paths: Vec<String>,
    /// Alternatives.
    #[serde(rename = "match")]
    pub matches: Vec<Matcher>,
}

/// A fetched page, as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Title, if any.
    pub title: Option<String>,
    /// Body (bounded), lower-cased for matching.
    pub body_lower: String,
}

impl Matcher {
    fn is_empty(&self) -> bool {
        self.title.is_empty() && self.body.is_empty() && self.header.is_empty() && self.favicon.is_empty()
    }

    /// Whether this alternative holds for `page` (and the site's favicon hash).
    pub fn holds(&self, page: &Page, favicon: Option<i32>) -> bool {
        let contains = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        (self.status.is_empty() || self.status.contains(&page.status))
            && self
                .title
                .iter()
                .all(|t| page.title.as_deref().is_some_and(|title| contains(title, t)))
            && self
                .body
                .iter()
                .all(|b| page.body_lower.contains(&b.to_lowercase()))
            && self.header.iter().all(|(name, text)| {
                page.headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(name) && contains(v, text))
            })
            && (self.favicon.is_empty() || favicon.is_some_and(|f| self.favicon.contains(&f)))
    }
}

/// A rule set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The rules, in file order.
    pub panels: Vec<Panel>,
}

/// A rule file that does not load.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not TOML of the expected shape.
    #[error("{source_name}: {message}")]
    Parse {
        /// File name or `builtin`.
        source_name: String,
        /// What is wrong, with its place.
        message: String,
    },
    /// A rule breaks a rule of the format.
    #[error("{source_name}: panel `{id}`: {message}")]
    Invalid {
        /// File name or `builtin`.
        source_name: String,
        /// The rule.
        id: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    panel: Vec<Panel>,
}

impl Rules {
    /// The builtin rules.
    pub fn builtin() -> Result<Rules, RulesError> {
        let mut rules = Rules::default();
        rules.add("builtin", BUILTIN)?;
        Ok(rules)
    }

    /// Add the rules of a file's text (ids must stay unique).
    pub fn add(&mut self, source_name: &str, text: &str) -> Result<(), RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        let mut ids: BTreeSet<String> = self.panels.iter().map(|p| p.id.clone()).collect();
        for panel in file.panel {
            let invalid = |message: &str| RulesError::Invalid {
                source_name: source_name.to_string(),
                id: panel.id.clone(),
                message: message.to_string(),
            };
            if !ids.insert(panel.id.clone()) {
                return Err(invalid("id used twice"));
            }
            if panel.cite.trim().is_empty() {
                return Err(invalid(
                    "`cite` is empty: say what the rule matches and where that is seen",
                ));
            }
            if panel.paths.is_empty() || panel.paths.len() > 4 {
                return Err(invalid("`paths` must list 1 to 4 paths"));
            }
            if let Some(p) = panel.paths.iter().find(|p| !p.starts_with('/')) {
                return Err(invalid(&format!("path `{p}` does not start with `/`")));
            }
            if panel.matches.is_empty() || panel.matches.iter().any(Matcher::is_empty) {
                return Err(invalid(
                    "every `match` needs a title, body, header or favicon condition (a status alone proves nothing)",
                ));
            }
            self.panels.push(panel);
        }
        Ok(())
    }

    /// Every distinct path the rules fetch, in first-use order.
    pub fn paths(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.panels
            .iter()
            .flat_map(|p| p.paths.iter())
            .filter(|p| seen.insert(p.as_str()))
            .cloned()
            .collect()
    }

    /// Panels matched by the fetched pages (path -> page) and favicon hash.
    pub fn matches<'a>(
        &'a self,
        pages: &BTreeMap<String, Page>,
        favicon: Option<i32>,
    ) -> Vec<(&'a Panel, String)> {
        self.panels
            .iter()
            .filter_map(|panel| {
                panel.paths.iter().find_map(|path| {
                    let page = pages.get(path)?;
                    panel
                        .matches
                        .iter()
                        .any(|m| m.holds(page, favicon))
                        .then(|| (panel, path.clone()))
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn page(status: u16, title: &str, body: &str, headers: &[(&str, &str)]) -> Page {
        Page {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            title: Some(title.to_string()).filter(|t| !t.is_empty()),
            body_lower: body.to_lowercase(),
        }
    }

    #[test]
    fn builtin_rules_load_and_cover_the_brief() {
        let rules = Rules::builtin().unwrap();
        assert!(rules.panels.len() >= 40, "{} rules", rules.panels.len());
        for id in [
            "tomcat-manager",
            "jenkins",
            "phpmyadmin",
            "kibana",
            "rabbitmq-management",
            "spring-boot-actuator",
            "weblogic-console",
            "grafana",
            "haproxy-stats",
        ] {
            assert!(rules.panels.iter().any(|p| p.id == id), "{id} missing");
        }
        assert!(rules.paths().len() <= 80, "a bounded number of fetches per port");
    }

    #[test]
    fn matching() {
        let rules = Rules::builtin().unwrap();
        let mut pages = BTreeMap::new();
        pages.insert(
            "/manager/html".to_string(),
            page(
                401,
                "",
                "",
                &[("www-authenticate", "Basic realm=\"Tomcat Manager Application\"")],
            ),
        );
        let hits: Vec<&str> = rules
            .matches(&pages, None)
            .iter()
            .map(|(p, _)| p.id.as_str())
            .collect();
        assert_eq!(hits, ["tomcat-manager"]);
        // A plain 401 elsewhere, or a bare status, names nothing.
        pages.insert(
            "/manager/html".to_string(),
            page(401, "", "", &[("www-authenticate", "Basic realm=\"x\"")]),
        );
        pages.insert(
            "/".to_string(),
            page(200, "Welcome to nginx!", "<h1>Welcome to nginx!</h1>", &[]),
        );
        assert!(rules.matches(&pages, None).is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_the_rule_named() {
        let mut rules = Rules::default();
        let err = rules
            .add("mine.toml", "[[panel]]\nid = \"x\"\nname = \"X\"\ncite = \"c\"\npaths = [\"/\"]\n[[panel.match]]\nstatus = [200]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mine.toml") && err.contains("`x`") && err.contains("status alone"),
            "{err}"
        );
        let err = rules
            .add("mine.toml", "[[panel]]\nid = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mine.toml"), "{err}");
    }
}
