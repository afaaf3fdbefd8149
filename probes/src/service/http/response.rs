//! An HTTP/1.x response as portwatch reads it (RFC 9112): the status line, the
//! headers, and as much of the body as arrived, de-chunked. The HTTP probe and the
//! API recognisers beside it all read this one parse.

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order (names as sent).
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked, as far as received.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

pub(super) fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parse a response (head and whatever of the body arrived).
pub fn parse_response(b: &[u8]) -> Option<Response> {
    let end = head_end(b)?;
    let head = String::from_utf8_lossy(&b[..end]);
    let mut lines = head.split("\r\n");
    let mut status = lines.next()?.split_whitespace();
    let proto = status.next()?;
    let code = status.next()?;
    if !proto.starts_with("HTTP/1.") || code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status: code.parse().ok()?,
        headers,
        body: b[end..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body);
    }
    Some(response)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|&s| s > 0) else {
            break;
        };
        let start = line_end + 2;
        let stop = (start + size).min(b.len());
        out.extend_from_slice(&b[start..stop]);
        b = b.get(stop + 2..).unwrap_or_default();
    }
    out
}

/// Whether a response is complete: head, and the body its length announces.
pub(super) fn complete(b: &[u8]) -> bool {
    let Some(end) = head_end(b) else { return false };
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => b.len() >= end + n,
        None if head.contains("transfer-encoding: chunked") => b.ends_with(b"0\r\n\r\n"),
        None => false, // read until the server closes (HTTP/1.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"Wikipedia");
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"));
    }
}
