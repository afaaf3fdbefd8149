//! Secrets out of sight: URLs as a person may read them.
//!
//! A chat robot's URL *is* its credential (Slack's `/services/T…/B…/…`, Feishu's
//! `/hook/<uuid>`, DingTalk's `?access_token=`, WeCom's `?key=`), and HTTP clients
//! put the URL into their error texts. Everything a person can read (errors stored
//! in the journal, the API, the CLI, logs, `check-config`) goes through here first:
//! user info, query values, fragments and token-like path segments become `***`;
//! scheme, host, port and the plain words of the path stay, so an operator still
//! sees which endpoint failed.

/// What stands for a secret.
pub const HIDDEN: &str = "***";

/// Whether a path segment looks like a credential rather than a word of the API:
/// long, or a mix of letters and digits (Slack's `T0123ABCD`, a UUID, a key).
fn secret_like(segment: &str) -> bool {
    let letters = segment.chars().any(|c| c.is_ascii_alphabetic());
    let digits = segment.chars().any(|c| c.is_ascii_digit());
    segment.len() >= 16 || (segment.len() >= 8 && letters && digits)
}

/// `raw` with its secrets hidden. Something that does not parse as a URL keeps only
/// what comes before its first `?`, `#` or `@`-carrying authority.
pub fn url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        let cut = raw.find(['?', '#']).unwrap_or(raw.len());
        let head = &raw[..cut];
        let head = match (head.find("://"), head.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}{HIDDEN}@{}", &head[..s + 3], &head[at + 1..]),
            _ => head.to_string(),
        };
        return if cut < raw.len() {
            format!("{head}?{HIDDEN}")
        } else {
            head
        };
    };
    let hides = !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || u.path_segments().is_some_and(|mut s| s.any(secret_like));
    if !hides {
        // Nothing to hide: as written (the parser would normalise it).
        return raw.to_string();
    }
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username(HIDDEN);
        let _ = u.set_password(None);
    }
    if u.query().is_some() {
        let pairs: Vec<String> = u.query_pairs().map(|(k, _)| format!("{k}={HIDDEN}")).collect();
        u.set_query(Some(&pairs.join("&")));
    }
    if u.fragment().is_some() {
        u.set_fragment(Some(HIDDEN));
    }
    if let Some(segments) = u.path_segments() {
        let path: Vec<&str> = segments
            .map(|s| if secret_like(s) { HIDDEN } else { s })
            .collect();
        u.set_path(&path.join("/"));
    }
    // `set_*` escapes `*`; people read the plain form.
    u.as_str().replace("%2A", "*")
}

/// `text` with every URL in it hidden as [`url`] does.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        // The scheme runs back over letters, digits, '+', '-' and '.'.
        let start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[sep..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '(' | '"' | '\'' | '<' | '>' | ',' | ';'))
            .map_or(rest.len(), |i| sep + i);
        out.push_str(&rest[..start]);
        if start == sep {
            // No scheme before it: not a URL.
            out.push_str(&rest[start..end]);
        } else {
            out.push_str(&url(&rest[start..end]));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_of_every_kind_of_channel_are_hidden() {
        for (raw, shown) in [
            (
                "https://oapi.dingtalk.com/robot/send?access_token=SECRET",
                "https://oapi.dingtalk.com/robot/send?access_token=***",
            ),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
            ),
            (
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/***/***/***",
            ),
            (
                "https://open.feishu.cn/open-apis/bot/v2/hook/4f2c3a9e-1b7d-4e6f-9a0b-2c3d4e5f6a7b",
                "https://open.feishu.cn/open-apis/bot/v2/hook/***",
            ),
            (
                "smtp://pw:hunter2@mx.example:587?tls=required",
                "smtp://***@mx.example:587?tls=***",
            ),
            (
                "http://127.0.0.1:9093/api/v2/alerts",
                "http://127.0.0.1:9093/api/v2/alerts",
            ),
            ("http://mx", "http://mx"),
            (
                "https://fw.example/api/blocks#token",
                "https://fw.example/api/blocks#***",
            ),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn urls_inside_error_texts_are_hidden_and_the_rest_kept() {
        let e = "error sending request for url (http://127.0.0.1:9/robot/send?access_token=SECRET): tcp connect error: Connection refused (os error 111)";
        let shown = text(e);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.contains("http://127.0.0.1:9/robot/send?access_token=***"),
            "{shown}"
        );
        assert!(shown.ends_with("Connection refused (os error 111)"), "{shown}");
        assert_eq!(text("HTTP 500: planned failure"), "HTTP 500: planned failure");
        assert_eq!(text("a :// b"), "a :// b");
        let garbled = text("see ht!tp://x?token=abc and https://u:p@h/x?k=v");
        assert!(
            !garbled.contains("abc") && !garbled.contains("u:p") && !garbled.contains("k=v"),
            "{garbled}"
        );
    }
}
