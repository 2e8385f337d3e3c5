//! `X-ORG-AUTH`: two servers prove to each other that they hold the organization's secret,
//! without sending it.
//!
//! ```text
//! C: X-ORG-AUTH HELLO <org-id> <client-name> <client-nonce>
//! S: 334 <server-nonce> <server-proof>
//! C: X-ORG-AUTH PROOF <client-proof>
//! S: 235 2.7.0 <client-name> authenticated in <org-id>
//! ```
//!
//! Each proof is HMAC-SHA256 (RFC 2104) keyed with the secret over a transcript naming the
//! organization, both servers and both nonces, the side it speaks for, and the TLS session's
//! channel binding (`tls-exporter`, RFC 9266; empty in clear). The binding ties the proofs to
//! the one TLS session they were made in: a relay that terminates TLS towards each server
//! holds two sessions with two bindings, and no proof it passes on verifies. The server checks
//! the client's proof against its own fresh nonce, so a proof recorded in another session (a
//! replay) fails; the client checks the server's proof before it sends its own, so a server
//! that does not hold the secret learns nothing useful. Proofs are compared in constant time
//! (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Which side a proof speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The connecting server.
    Client,
    /// The server connected to.
    Server,
}

/// The transcript both sides sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// The organization's id.
    pub org: &'a str,
    /// The connecting server's name.
    pub client: &'a str,
    /// The name of the server connected to.
    pub server: &'a str,
    /// The client's nonce (hex).
    pub client_nonce: &'a str,
    /// The server's nonce (hex).
    pub server_nonce: &'a str,
    /// The TLS channel binding as this side sees it (hex; empty in clear).
    pub binding: &'a str,
}

/// A session's channel binding in the form a [`Transcript`] takes.
pub fn binding(tls: Option<&crate::tls::TlsInfo>) -> String {
    tls.and_then(|t| t.binding)
        .map(hex::encode)
        .unwrap_or_default()
}

impl Transcript<'_> {
    fn mac(&self, secret: &[u8], side: Side) -> HmacSha256 {
        // HMAC takes a key of any length (RFC 2104 §3): this cannot fail.
        #[allow(clippy::expect_used)]
        let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        let side = match side {
            Side::Client => "client",
            Side::Server => "server",
        };
        for part in [
            "mailroom-org-auth-v2",
            side,
            self.org,
            self.client,
            self.server,
            self.client_nonce,
            self.server_nonce,
            self.binding,
        ] {
            m.update(&(part.len() as u32).to_be_bytes());
            m.update(part.as_bytes());
        }
        m
    }

    /// The proof of `side` (hex).
    pub fn proof(&self, secret_hex: &str, side: Side) -> String {
        let key = hex::decode(secret_hex).unwrap_or_else(|_| secret_hex.as_bytes().to_vec());
        hex::encode(self.mac(&key, side).finalize().into_bytes())
    }

    /// True when `proof` (hex) is `side`'s proof.
    pub fn verify(&self, secret_hex: &str, side: Side, proof: &str) -> bool {
        let key = hex::decode(secret_hex).unwrap_or_else(|_| secret_hex.as_bytes().to_vec());
        let Ok(p) = hex::decode(proof) else {
            return false;
        };
        self.mac(&key, side).verify_slice(&p).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn t<'a>(sn: &'a str) -> Transcript<'a> {
        Transcript {
            org: "org1",
            client: "a.test",
            server: "b.test",
            client_nonce: "0a0b",
            server_nonce: sn,
            binding: "77",
        }
    }

    #[test]
    fn proofs_verify_only_with_the_secret_the_side_and_the_nonces() {
        let p = t("c0c1").proof(SECRET, Side::Client);
        assert!(t("c0c1").verify(SECRET, Side::Client, &p));
        assert!(
            !t("c0c1").verify(SECRET, Side::Server, &p),
            "a client proof is not a server proof (reflection)"
        );
        assert!(
            !t("d0d1").verify(SECRET, Side::Client, &p),
            "a proof from another session is refused (replay)"
        );
        let other = "ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(!t("c0c1").verify(other, Side::Client, &p), "another secret");
        let relayed = Transcript {
            binding: "88",
            ..t("c0c1")
        };
        assert!(
            !relayed.verify(SECRET, Side::Client, &p),
            "a proof made in another TLS session (through a relay) is refused"
        );
        assert!(
            !Transcript {
                binding: "",
                ..t("c0c1")
            }
            .verify(SECRET, Side::Client, &p),
            "nor in clear"
        );
        assert!(!t("c0c1").verify(SECRET, Side::Client, "zz"));
        assert!(!t("c0c1").verify(SECRET, Side::Client, ""));
    }
}
