//! CouchDB: the root answers `{"couchdb":"Welcome","version":...}`.

use super::Response;
use crate::service::Found;

/// Recognise the root answer.
pub(super) fn recognise(r: &Response) -> Option<Found> {
    let json = r.json()?;
    (json["couchdb"].as_str() == Some("Welcome")).then(|| {
        Found::new("couchdb")
            .product("Apache CouchDB")
            .version(json["version"].as_str().map(str::to_string))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::parse_response;
    use super::*;

    #[test]
    fn answers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n{\"couchdb\":\"Welcome\",\"version\":\"3.3.2\"}")
            .unwrap();
        assert_eq!(recognise(&r).unwrap().version.as_deref(), Some("3.3.2"));
    }
}
