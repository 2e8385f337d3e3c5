//! SASL responses as the client sends them over SMTP AUTH (RFC 4954 §4), POP3 AUTH (RFC 5034 §4)
//! and IMAP AUTHENTICATE (RFC 9051 §6.2.2): base64, `=` for an empty response (RFC 4959 for
//! IMAP's initial response), `*` to cancel.

use base64::Engine;

/// Why a SASL response was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The client sent `*`.
    #[error("authentication cancelled")]
    Cancelled,
    /// Not base64.
    #[error("the response must be base64")]
    NotBase64,
}

/// Decodes one response line (without its CRLF).
pub fn decode_response(text: &[u8]) -> Result<Vec<u8>, ResponseError> {
    match text.trim_ascii() {
        b"*" => Err(ResponseError::Cancelled),
        b"=" => Ok(Vec::new()),
        t => base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|_| ResponseError::NotBase64),
    }
}

/// The three fields of a PLAIN response (RFC 4616 §2): authorization identity, authentication
/// identity, password.
pub fn plain(decoded: &[u8]) -> Option<(String, String, String)> {
    let mut it = decoded.split(|&b| b == 0);
    let (z, c, p) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || c.is_empty() {
        return None;
    }
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    Some((s(z)?, s(c)?, s(p)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        assert_eq!(decode_response(b"*"), Err(ResponseError::Cancelled));
        assert_eq!(decode_response(b"="), Ok(Vec::new()));
        assert_eq!(decode_response(b"AGJvYgBwdw=="), Ok(b"\0bob\0pw".to_vec()));
        assert_eq!(decode_response(b"!!"), Err(ResponseError::NotBase64));
        assert_eq!(
            plain(b"\0bob\0pw"),
            Some((String::new(), "bob".into(), "pw".into()))
        );
        assert_eq!(plain(b"\0\0pw"), None);
        assert_eq!(plain(b"a\0b"), None);
    }
}
