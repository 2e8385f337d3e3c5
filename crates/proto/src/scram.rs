//! The messages of SCRAM (RFC 5802), as SCRAM-SHA-256 (RFC 7677) uses them: parsing the client's
//! two messages and writing the server's, with no cryptography (that is the server's part) and
//! no I/O.
//!
//! ```text
//! client-first  = gs2-header client-first-bare      e.g. "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
//! server-first  = "r=" nonce ",s=" salt ",i=" iterations
//! client-final  = "c=" base64(gs2-header) ",r=" nonce ",p=" base64(proof)
//! server-final  = "v=" base64(server-signature)
//! ```
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`, a gs2 flag of `p=`) is not offered, so a client that
//! demands it is refused; `y` (the client could bind but thinks the server cannot) is accepted,
//! as RFC 5802 §6 allows when the server offers no -PLUS mechanism.

use base64::Engine;

/// Why a client message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// Not the message the grammar asks for.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asks for channel binding, which is not offered.
    #[error("channel binding is not supported (SCRAM-SHA-256-PLUS is not offered)")]
    ChannelBinding,
    /// The client asks for an extension this server does not know (`m=`, RFC 5802 §5.1).
    #[error("SCRAM extensions are not supported")]
    Extension,
}

/// The client's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The gs2 header, exactly as sent (`n,,` or `y,,` with an optional `a=` authzid).
    pub gs2_header: String,
    /// The authorization identity (`a=`), if any, unescaped.
    pub authzid: Option<String>,
    /// The user name (`n=`), unescaped.
    pub username: String,
    /// The client's nonce (`r=`).
    pub nonce: String,
    /// The message without its gs2 header, exactly as sent: part of the signed AuthMessage.
    pub bare: String,
}

/// The client's final message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    /// The channel binding (`c=`), decoded: must equal the gs2 header.
    pub channel_binding: Vec<u8>,
    /// The combined nonce (`r=`).
    pub nonce: String,
    /// The proof (`p=`), decoded.
    pub proof: Vec<u8>,
    /// The message up to, without, `,p=...`: part of the signed AuthMessage.
    pub without_proof: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A `saslname` (RFC 5802 §5.1): `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn unescape(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['=', ',']) {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        rest = if let Some(after) = tail.strip_prefix("=2C") {
            out.push(',');
            after
        } else if let Some(after) = tail.strip_prefix("=3D") {
            out.push('=');
            after
        } else {
            return Err(ScramError::Malformed("a name has a bad escape"));
        };
    }
    out.push_str(rest);
    Ok(out)
}

/// A printable nonce (RFC 5802 §5.1: printable ASCII except `,`).
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl ClientFirst {
    /// Parses `gs2-header client-first-bare`.
    pub fn parse(msg: &[u8]) -> Result<ClientFirst, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut parts = msg.splitn(3, ',');
        let flag = parts.next().unwrap_or("");
        let authz = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("the gs2 flag must be n, y or p=")),
        }
        let authzid = match authz {
            "" => None,
            a => Some(unescape(
                a.strip_prefix("a=")
                    .ok_or(ScramError::Malformed("the authzid must be a=..."))?,
            )?),
        };
        let mut fields = bare.split(',');
        let first = fields.next().unwrap_or("");
        if first.starts_with("m=") {
            return Err(ScramError::Extension);
        }
        let username = unescape(
            first
                .strip_prefix("n=")
                .ok_or(ScramError::Malformed("the user name (n=) must come first"))?,
        )?;
        if username.is_empty() {
            return Err(ScramError::Malformed("the user name is empty"));
        }
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| valid_nonce(n))
            .ok_or(ScramError::Malformed("the nonce (r=) must follow the name"))?;
        Ok(ClientFirst {
            gs2_header: format!("{flag},{authz},"),
            authzid,
            username,
            nonce: nonce.to_string(),
            bare: bare.to_string(),
        })
    }
}

impl ClientFinal {
    /// Parses `c=... ,r=... [,extensions] ,p=...`.
    pub fn parse(msg: &[u8]) -> Result<ClientFinal, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof (p=)"))?;
        let mut fields = without_proof.split(',');
        let channel_binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .and_then(|c| b64().decode(c).ok())
            .ok_or(ScramError::Malformed(
                "the channel binding (c=) must come first",
            ))?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| valid_nonce(n))
            .ok_or(ScramError::Malformed("the nonce (r=) must follow c="))?;
        let proof = b64()
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        Ok(ClientFinal {
            channel_binding,
            nonce: nonce.to_string(),
            proof,
            without_proof: without_proof.to_string(),
        })
    }
}

/// The server's first message.
pub fn server_first(nonce: &str, salt: &[u8], iterations: u32) -> String {
    format!("r={nonce},s={},i={iterations}", b64().encode(salt))
}

/// The server's final message.
pub fn server_final(signature: &[u8]) -> String {
    format!("v={}", b64().encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_table() {
        let ok = ClientFirst::parse(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(ok.gs2_header, "n,,");
        assert_eq!(ok.username, "user");
        assert_eq!(ok.nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(ok.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let esc = ClientFirst::parse(b"y,a=b=2Cc,n=a=3Db=2Cc,r=x").unwrap();
        assert_eq!(
            (esc.authzid.as_deref(), esc.username.as_str()),
            (Some("b,c"), "a=b,c")
        );
        let cases: &[(&[u8], ScramError)] = &[
            (b"p=tls-unique,,n=u,r=x", ScramError::ChannelBinding),
            (b"n,,m=ext,n=u,r=x", ScramError::Extension),
            (
                b"q,,n=u,r=x",
                ScramError::Malformed("the gs2 flag must be n, y or p="),
            ),
            (
                b"n,,n=u",
                ScramError::Malformed("the nonce (r=) must follow the name"),
            ),
            (
                b"n,,n=,r=x",
                ScramError::Malformed("the user name is empty"),
            ),
            (
                b"n,,n=a=2Xb,r=x",
                ScramError::Malformed("a name has a bad escape"),
            ),
            (
                b"n,n=u,r=x",
                ScramError::Malformed("the authzid must be a=..."),
            ),
            (b"n", ScramError::Malformed("no gs2 header")),
            (b"\xff", ScramError::Malformed("not UTF-8")),
        ];
        for (input, want) in cases {
            assert_eq!(
                ClientFirst::parse(input).as_ref().err(),
                Some(want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn client_final_table() {
        // RFC 7677 §3's example.
        let m = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let f = ClientFinal::parse(m).unwrap();
        assert_eq!(f.channel_binding, b"n,,");
        assert_eq!(
            f.nonce,
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        assert_eq!(f.proof.len(), 32);
        assert_eq!(
            f.without_proof,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        assert!(ClientFinal::parse(b"c=biws,r=x").is_err());
        assert!(ClientFinal::parse(b"c=!!,r=x,p=AAAA").is_err());
        assert!(ClientFinal::parse(b"r=x,c=biws,p=AAAA").is_err());
        assert!(ClientFinal::parse(b"c=biws,r=x,p=***").is_err());
    }
}
