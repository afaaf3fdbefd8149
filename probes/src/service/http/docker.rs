//! Docker Engine API: every answer carries `Api-Version` and a `Server:
//! Docker/<version> (<os>)` header; `GET /version` answers JSON with `Version` and
//! `ApiVersion`. An unauthenticated Docker API is root on the host.

use super::Response;
use crate::service::Found;

/// Recognise any answer by its headers.
pub(super) fn recognise(r: &Response) -> Option<Found> {
    let server = r.header("server").unwrap_or_default();
    let version = server
        .strip_prefix("Docker/")
        .and_then(|v| v.split_whitespace().next())
        .map(str::to_string);
    (version.is_some() || (r.header("api-version").is_some() && r.header("docker-experimental").is_some()))
        .then(|| Found::new("docker").product("Docker Engine API").version(version))
}

/// Recognise the `/version` answer.
pub(super) fn recognise_version(r: &Response) -> Option<Found> {
    let json = r.json()?;
    json["ApiVersion"].as_str()?;
    Some(
        Found::new("docker")
            .product("Docker Engine API")
            .version(json["Version"].as_str().map(str::to_string)),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::parse_response;
    use super::*;

    #[test]
    fn answers() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nApi-Version: 1.43\r\nDocker-Experimental: false\r\nServer: Docker/24.0.7 (linux)\r\n\r\n{\"message\":\"page not found\"}").unwrap();
        assert_eq!(recognise(&r).unwrap().version.as_deref(), Some("24.0.7"));
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n{\"Version\":\"24.0.7\",\"ApiVersion\":\"1.43\"}")
            .unwrap();
        assert!(recognise_version(&r).is_some());
    }
}
