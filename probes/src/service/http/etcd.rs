//! etcd: `GET /version` answers `{"etcdserver":"3.5.9","etcdcluster":"3.5.0"}`.

use super::Response;
use crate::service::Found;

/// Recognise the `/version` answer.
pub(super) fn recognise_version(r: &Response) -> Option<Found> {
    let json = r.json()?;
    let server = json["etcdserver"].as_str()?;
    Some(
        Found::new("etcd")
            .product("etcd")
            .version(Some(server.to_string())),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::parse_response;
    use super::*;

    #[test]
    fn answers() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n{\"etcdserver\":\"3.5.9\",\"etcdcluster\":\"3.5.0\"}")
                .unwrap();
        assert_eq!(recognise_version(&r).unwrap().version.as_deref(), Some("3.5.9"));
    }
}
