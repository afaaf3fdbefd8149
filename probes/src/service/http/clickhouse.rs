//! ClickHouse's HTTP interface (port 8123): its root answers `Ok.` and its headers
//! start with `X-ClickHouse-`; `SELECT version()` tells the version. (The native
//! protocol is `service/clickhouse.rs`.)

use super::Response;
use crate::service::Found;

/// Recognise the HTTP interface's root answer.
pub(super) fn recognise_http(r: &Response) -> Option<Found> {
    let headers = r
        .headers
        .iter()
        .any(|(k, _)| k.to_ascii_lowercase().starts_with("x-clickhouse-"));
    (headers || (r.status == 200 && r.body == b"Ok.\n"))
        .then(|| Found::new("clickhouse").product("ClickHouse"))
}

/// Where the HTTP interface tells its version.
pub(super) const HTTP_VERSION_QUERY: &str = "/?query=SELECT%20version()";

/// The version in the answer to [`HTTP_VERSION_QUERY`].
pub(super) fn http_version(r: &Response) -> Option<String> {
    let text = r.text();
    let v = text.trim();
    (r.status == 200 && !v.is_empty() && v.len() < 40 && v.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
        .then(|| v.to_string())
}
