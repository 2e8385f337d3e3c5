//! DKIM signing of mail sent from this server's domains (RFC 6376; Ed25519: RFC 8463), and the
//! keys: `mailroom dkim generate DOMAIN` makes `DATA/dkim/DOMAIN.SELECTOR.key` and prints the
//! DNS record to publish at `SELECTOR._domainkey.DOMAIN`.
//!
//! A key is read from its file for each message it signs, so a key made (or replaced) while the
//! server runs is used at once. RSA keys are made with the `rsa` crate, since *ring*, which
//! signs, cannot generate them; Ed25519 keys with *ring*.

use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

/// The directory of the keys, inside the data directory.
pub const DIR_NAME: &str = "dkim";

/// The headers signed (RFC 6376 §5.4.1's recommendations, each once).
const SIGNED: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// A file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key already exists.
    #[error("{0} already exists (use --force to replace it; the old record stops verifying)")]
    Exists(PathBuf),
    /// The key does not parse, or signing failed.
    #[error("{0}")]
    Key(String),
}

/// The kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// RSA, 2048 bits, signed with SHA-256: what every verifier checks.
    Rsa,
    /// Ed25519 (RFC 8463): small, but not every verifier checks it yet.
    Ed25519,
}

/// The key file of `domain` with `selector`.
pub fn key_path(data: &Path, domain: &str, selector: &str) -> PathBuf {
    data.join(DIR_NAME)
        .join(format!("{}.{selector}.key", domain.to_lowercase()))
}

/// A key made, with its DNS record.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The private key's file.
    pub file: PathBuf,
    /// Where the record goes: `SELECTOR._domainkey.DOMAIN`.
    pub name: String,
    /// The TXT record's text.
    pub record: String,
}

impl Generated {
    /// The record in master-file form, split into strings of at most 255 octets (RFC 1035
    /// §3.3.14) as a TXT record of a 2048-bit key needs; verifiers join them (RFC 6376 §3.6.2.2).
    pub fn zone_line(&self) -> String {
        let parts: Vec<String> = self
            .record
            .as_bytes()
            .chunks(250)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!("{}. IN TXT {}", self.name, parts.join(" "))
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Makes a key for `domain` and writes it (mode 0600); refuses to replace one unless `force`.
pub fn generate(
    data: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    force: bool,
) -> Result<Generated, DkimError> {
    let file = key_path(data, domain, selector);
    if file.exists() && !force {
        return Err(DkimError::Exists(file));
    }
    let key = |e: String| DkimError::Key(format!("cannot make a key: {e}"));
    let (text, record) = match algorithm {
        Algorithm::Rsa => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::EncodePublicKey;
            let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                .map_err(|e| key(e.to_string()))?;
            let der = private.to_pkcs1_der().map_err(|e| key(e.to_string()))?;
            // p= is the SubjectPublicKeyInfo (RFC 6376 §3.6.1), as openssl writes it.
            let public = rsa::RsaPublicKey::from(&private)
                .to_public_key_der()
                .map_err(|e| key(e.to_string()))?;
            let p = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
            (
                pem("RSA PRIVATE KEY", der.as_bytes()),
                format!("v=DKIM1; k=rsa; p={p}"),
            )
        }
        Algorithm::Ed25519 => {
            let pkcs8 = Ed25519Key::generate_pkcs8().map_err(|e| key(e.to_string()))?;
            let k = Ed25519Key::from_pkcs8_der(&pkcs8).map_err(|e| key(e.to_string()))?;
            let p = base64::engine::general_purpose::STANDARD.encode(k.public_key());
            (
                pem("PRIVATE KEY", &pkcs8),
                format!("v=DKIM1; k=ed25519; p={p}"),
            )
        }
    };
    let io = |source| DkimError::Io {
        file: file.clone(),
        source,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    crate::fsutil::write_atomic(&file, text.as_bytes(), 0o600).map_err(io)?;
    Ok(Generated {
        file,
        name: format!("{selector}._domainkey.{}", domain.to_lowercase()),
        record,
    })
}

/// The `DKIM-Signature` field (CRLF-terminated) for `message`, signed with the key of `domain`,
/// or `None` when the domain has no key.
pub fn sign(
    data: &Path,
    domain: &str,
    selector: &str,
    message: &[u8],
) -> Result<Option<Vec<u8>>, DkimError> {
    let file = key_path(data, domain, selector);
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DkimError::Io { file, source }),
    };
    let bad = |e: String| DkimError::Key(format!("{}: {e}", file.display()));
    let der = PrivateKeyDer::from_pem_slice(&text).map_err(|e| bad(e.to_string()))?;
    let domain = domain.to_lowercase();
    // Only the fields present: one that is absent now may be added on the way (ingest adds a
    // Message-ID to a message without one), and an absent field signed would then fail.
    let present = present_fields(message);
    let fields: Vec<&str> = SIGNED
        .iter()
        .copied()
        .filter(|f| present.iter().any(|p| p.eq_ignore_ascii_case(f)))
        .collect();
    fn signed<K: mail_auth::common::crypto::SigningKey>(
        key: K,
        domain: &str,
        selector: &str,
        fields: &[&str],
        message: &[u8],
    ) -> mail_auth::Result<mail_auth::dkim::Signature> {
        DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(fields.iter().copied())
            .sign(message)
    }
    let signature = match der {
        // A PKCS #8 key is Ed25519 or RSA; PKCS #1 is RSA.
        PrivateKeyDer::Pkcs8(p) => match Ed25519Key::from_pkcs8_der(p.secret_pkcs8_der()) {
            Ok(k) => signed(k, &domain, selector, &fields, message),
            Err(_) => signed(
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(p))
                    .map_err(|e| bad(e.to_string()))?,
                &domain,
                selector,
                &fields,
                message,
            ),
        },
        other => signed(
            RsaKey::<Sha256>::from_key_der(other).map_err(|e| bad(e.to_string()))?,
            &domain,
            selector,
            &fields,
            message,
        ),
    }
    .map_err(|e| bad(e.to_string()))?;
    let mut h = signature.to_header();
    if !h.ends_with("\r\n") {
        h.push_str("\r\n");
    }
    Ok(Some(h.into_bytes()))
}

/// The names of the fields of a message's header section (the one header scanner,
/// [`mailroom_proto::header`]).
fn present_fields(message: &[u8]) -> Vec<String> {
    mailroom_proto::header::header(message)
        .fields
        .iter()
        .map(|f| String::from_utf8_lossy(f.name(message)).into_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
