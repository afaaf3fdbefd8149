//! HTTP(S) fingerprint and admin panel detection (task 5) for one web port.
//!
//! Requests go only to the port's own address: redirects are followed (at most
//! [`MAX_REDIRECTS`]) only while they stay on the same address and port, so nothing
//! outside the asset scope is contacted. Bodies are read up to a budget; every
//! request has a timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use crate::panels::{Page, PanelRisk, Rules};
use crate::service::tls;

/// Most redirects followed per request (same address and port only).
pub const MAX_REDIRECTS: usize = 3;

/// Headers worth keeping in a fingerprint.
const TELLING_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "www-authenticate",
    "x-generator",
    "x-aspnet-version",
    "x-jenkins",
    "via",
];

/// Limits of one port's web fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebLimits {
    /// Per request.
    pub timeout: Duration,
    /// Most body bytes read per response.
    pub max_body: usize,
    /// Requests in flight at once on this port.
    pub parallel: usize,
}

impl Default for WebLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            max_body: 256 * 1024,
            parallel: 8,
        }
    }
}

/// What the root page tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpInfo {
    /// Status of the last response of the root's redirect chain.
    pub status: u16,
    /// Page title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Telling headers (lower-case names).
    pub headers: BTreeMap<String, String>,
    /// Locations followed from `/` (same address only; others are listed, not
    /// followed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<String>,
    /// Favicon hash (MurmurHash3 of the base64 favicon, as Shodan computes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub favicon_mmh3: Option<i32>,
}

/// A panel found on the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PanelHit {
    /// Rule id.
    pub id: String,
    /// Product and console.
    pub name: String,
    /// The path that matched.
    pub path: String,
    /// Risk of the rule.
    pub risk: PanelRisk,
}

/// The web fingerprint of one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebFingerprint {
    /// The root page.
    pub http: HttpInfo,
    /// Panels found.
    pub panels: Vec<PanelHit>,
}

/// One fetched response (after same-origin redirects).
#[derive(Debug, Clone)]
struct Fetched {
    page: Page,
    redirects: Vec<String>,
    body: Vec<u8>,
}

fn client(limits: WebLimits) -> Result<reqwest::Client, String> {
    let tls = (*tls::client_config().map_err(|e| e.to_string())?).clone();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(limits.timeout)
        .connect_timeout(limits.timeout)
        .user_agent("portwatch")
        .pool_max_idle_per_host(limits.parallel)
        .build()
        .map_err(|e| e.to_string())
}

/// The text of the first `<title>` element, whitespace collapsed, at most 200 chars.
pub fn title_of(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let text = html.get(start..end)?;
    let text = text
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(text.chars().take(200).collect()).filter(|t: &String| !t.is_empty())
}

/// Shodan's favicon hash: MurmurHash3 x86 32-bit (seed 0) of the base64 encoding
/// with a newline after every 76 characters and at the end, as a signed integer.
pub fn favicon_hash(bytes: &[u8]) -> i32 {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut wrapped = String::with_capacity(b64.len() + b64.len() / 76 + 1);
    for chunk in b64.as_bytes().chunks(76) {
        wrapped.push_str(&String::from_utf8_lossy(chunk));
        wrapped.push('\n');
    }
    let hash = murmur3::murmur3_32(&mut std::io::Cursor::new(wrapped.as_bytes()), 0).unwrap_or(0);
    i32::from_ne_bytes(hash.to_ne_bytes())
}

async fn fetch(
    client: &reqwest::Client,
    base: &reqwest::Url,
    path: &str,
    limits: WebLimits,
) -> Option<Fetched> {
    let mut url = base.join(path).ok()?;
    let mut redirects = Vec::new();
    loop {
        let mut response = client.get(url.clone()).send().await.ok()?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        if response.status().is_redirection() && redirects.len() < MAX_REDIRECTS {
            if let Some(next) = location.as_deref().and_then(|l| url.join(l).ok()) {
                redirects.push(next.to_string());
                let same_origin = next.host() == base.host()
                    && next.port_or_known_default() == base.port_or_known_default();
                if same_origin && next.scheme() == base.scheme() {
                    url = next;
                    continue;
                }
            }
        }
        let headers: BTreeMap<String, String> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while body.len() < limits.max_body {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(limits.max_body - body.len())])
                }
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body);
        let page = Page {
            status,
            headers: headers.into_iter().collect(),
            title: title_of(&text),
            body_lower: text.to_lowercase(),
        };
        return Some(Fetched {
            page,
            redirects,
            body,
        });
    }
}

/// Fingerprint the web server at `addr` (`tls`: through HTTPS) and run the panel
/// rules. `None` when the root page cannot be fetched at all.
pub async fn fingerprint(
    addr: SocketAddr,
    tls: bool,
    rules: &Rules,
    limits: WebLimits,
) -> Option<WebFingerprint> {
    let client = client(limits).ok()?;
    let scheme = if tls { "https" } else { "http" };
    let base = reqwest::Url::parse(&format!("{scheme}://{addr}/")).ok()?;
    let root = fetch(&client, &base, "/", limits).await?;
    let favicon = fetch(&client, &base, "/favicon.ico", limits)
        .await
        .filter(|f| f.page.status == 200 && !f.body.is_empty() && !f.body.starts_with(b"<"))
        .map(|f| favicon_hash(&f.body));
    let paths: Vec<String> = rules.paths().into_iter().filter(|p| p != "/").collect();
    let mut pages: BTreeMap<String, Page> = futures::stream::iter(paths)
        .map(|path| {
            let (client, base) = (&client, &base);
            async move { fetch(client, base, &path, limits).await.map(|f| (path, f.page)) }
        })
        .buffer_unordered(limits.parallel.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await;
    pages.insert("/".to_string(), root.page.clone());
    let panels = rules
        .matches(&pages, favicon)
        .into_iter()
        .map(|(panel, path)| PanelHit {
            id: panel.id.clone(),
            name: panel.name.clone(),
            path,
            risk: panel.risk,
        })
        .collect();
    let headers = root
        .page
        .headers
        .iter()
        .filter(|(k, _)| TELLING_HEADERS.contains(&k.as_str()))
        .cloned()
        .collect();
    Some(WebFingerprint {
        http: HttpInfo {
            status: root.page.status,
            title: root.page.title,
            headers,
            redirects: root.redirects,
            favicon_mmh3: favicon,
        },
        panels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(
            title_of("<html><TITLE>\n Welcome &amp; hi </TITLE>").as_deref(),
            Some("Welcome & hi")
        );
        assert_eq!(title_of("<title></title>"), None);
        assert_eq!(title_of("no title"), None);
    }

    #[test]
    fn favicon_hash_follows_the_shodan_convention() {
        // base64("hello") = "aGVsbG8=", hashed with its newline: mmh3("aGVsbG8=\n").
        let expected = murmur3::murmur3_32(&mut std::io::Cursor::new(b"aGVsbG8=\n"), 0).unwrap_or(0);
        assert_eq!(favicon_hash(b"hello"), expected as i32);
        // Lines wrap at 76 characters.
        let long = vec![0u8; 100];
        assert_ne!(favicon_hash(&long), favicon_hash(&long[..99]));
    }
}
