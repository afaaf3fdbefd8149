//! Kubernetes API server: the root answers a `Status` object (`"kind":"Status",
//! "apiVersion":"v1"`) when anonymous access is refused, or the list of API paths;
//! `GET /version` answers `gitVersion`, `major`, `minor`.

use super::Response;
use crate::service::Found;

/// Recognise the root answer.
pub(super) fn recognise(r: &Response) -> Option<Found> {
    let json = r.json()?;
    let status = json["kind"].as_str() == Some("Status") && json["apiVersion"].as_str() == Some("v1");
    let paths = json["paths"].as_array().is_some_and(|p| {
        p.iter().any(|v| v.as_str() == Some("/api")) && p.iter().any(|v| v.as_str() == Some("/apis"))
    });
    (status || paths).then(|| Found::new("kubernetes").product("Kubernetes API server"))
}

/// Recognise the `/version` answer.
pub(super) fn recognise_version(r: &Response) -> Option<Found> {
    let json = r.json()?;
    json["major"].as_str()?;
    let git = json["gitVersion"].as_str()?;
    Some(
        Found::new("kubernetes")
            .product("Kubernetes API server")
            .version(Some(git.trim_start_matches('v').to_string())),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::parse_response;
    use super::*;

    #[test]
    fn answers() {
        let r = parse_response(b"HTTP/1.1 403 Forbidden\r\n\r\n{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"code\":403}").unwrap();
        assert!(recognise(&r).is_some());
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\n\r\n{\"major\":\"1\",\"minor\":\"28\",\"gitVersion\":\"v1.28.2\"}",
        )
        .unwrap();
        assert_eq!(recognise_version(&r).unwrap().version.as_deref(), Some("1.28.2"));
    }
}
