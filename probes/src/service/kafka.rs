//! Kafka (and Kafka-protocol brokers): `ApiVersions` v0 is answered with this
//! request's correlation id, an error code and the list of supported API ranges.
//! The protocol does not name the broker's product.

use super::{Conn, Found, Reply};

const CORRELATION: i32 = 0x7077_6174;

/// ApiVersions v0 with client id `portwatch`.
pub fn request() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&CORRELATION.to_be_bytes());
    body.extend_from_slice(&9i16.to_be_bytes());
    body.extend_from_slice(b"portwatch");
    let mut msg = (body.len() as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

fn be32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn complete(b: &[u8]) -> bool {
    be32(b, 0).is_some_and(|len| len > 0 && b.len() >= 4 + len as usize)
}

/// Parse the reply.
pub fn parse(reply: &[u8]) -> Option<Found> {
    let len = be32(reply, 0)? as usize;
    if be32(reply, 4)? != CORRELATION || reply.len() < 4 + len {
        return None;
    }
    let error = i16::from_be_bytes(reply.get(8..10)?.try_into().ok()?);
    let count = be32(reply, 10)?;
    // No error, or UNSUPPORTED_VERSION (35); an array of (key, min, max) that fits.
    let fits = count >= 0 && 10 + 4 + 6 * count as usize <= 4 + len && count < 1000;
    ((error == 0 && count > 0 && fits) || error == 35).then(|| Found::new("kafka"))
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    super::request_reply(conn, request(), complete, parse)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let mut body = CORRELATION.to_be_bytes().to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0, 9, 0, 1, 0, 0, 0, 13]);
        let mut reply = (body.len() as i32).to_be_bytes().to_vec();
        reply.extend_from_slice(&body);
        assert_eq!(parse(&reply).unwrap().service, "kafka");
        assert!(
            parse(&request()).is_none(),
            "an echo carries the api key where the id is"
        );
    }
}
