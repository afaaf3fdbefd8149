//! Elasticsearch / OpenSearch: the root answers JSON with `version.number` and the
//! tagline "You Know, for Search"; OpenSearch says `version.distribution:
//! opensearch`. Secured clusters answer 401 but name themselves in the
//! `X-elastic-product` header (Elasticsearch 7.14 and later).

use super::Response;
use crate::service::Found;

/// Recognise the root answer.
pub(super) fn recognise(r: &Response) -> Option<Found> {
    let found = Found::new("elasticsearch");
    if let Some(json) = r.json() {
        let version = &json["version"];
        let tagline = json["tagline"].as_str().unwrap_or_default();
        if tagline == "You Know, for Search"
            || (json["cluster_name"].is_string() && version["number"].is_string())
        {
            let number = version["number"].as_str().map(str::to_string);
            let product = if version["distribution"].as_str() == Some("opensearch") {
                "OpenSearch"
            } else {
                "Elasticsearch"
            };
            return Some(found.product(product).version(number));
        }
    }
    r.header("x-elastic-product")
        .filter(|p| p.eq_ignore_ascii_case("elasticsearch"))
        .map(|_| found.product("Elasticsearch"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::parse_response;
    use super::*;

    #[test]
    fn answers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n{\"name\":\"n1\",\"cluster_name\":\"c\",\"version\":{\"number\":\"8.11.1\"},\"tagline\":\"You Know, for Search\"}").unwrap();
        assert_eq!(recognise(&r).unwrap().version.as_deref(), Some("8.11.1"));
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n{\"cluster_name\":\"c\",\"version\":{\"distribution\":\"opensearch\",\"number\":\"2.11.0\"}}").unwrap();
        assert_eq!(recognise(&r).unwrap().product.as_deref(), Some("OpenSearch"));
        let r = parse_response(b"HTTP/1.1 401 Unauthorized\r\nX-elastic-product: Elasticsearch\r\n\r\n{}")
            .unwrap();
        assert!(recognise(&r).is_some());
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n{\"ok\":true}").unwrap();
        assert!(recognise(&r).is_none());
    }
}
