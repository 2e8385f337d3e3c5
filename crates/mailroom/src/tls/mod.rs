//! TLS for every listener (RFC 8314, RFC 3207, RFC 2595): the certificate, the versions, and
//! what a session learns of its TLS.
//!
//! One crypto provider, *ring*, for everything (it builds faster here than aws-lc-rs). Only TLS
//! 1.2 and 1.3 are enabled (RFC 8996 deprecates 1.0 and 1.1; rustls has never implemented
//! them), or 1.3 alone with `tls.min_version = "1.3"`.
//!
//! The certificate comes from PEM files. [`Tls::acceptor`] looks at the files' size and
//! modification time at each new TLS session, and reads them again when either changed, so a
//! renewed certificate is used at once without a restart; a renewal that cannot be read is
//! logged and the previous certificate goes on being used. `mailroom init` makes a self-signed
//! certificate ([`self_signed`]) so that TLS works from the first start.

pub mod acme;
pub mod client;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

pub use stream::Stream;

use crate::config::{TlsConfig, TlsVersion};

/// Why TLS cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {file}: {reason}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The files were read but do not make a usable certificate.
    #[error("{0}")]
    Invalid(String),
}

/// The crypto provider of every TLS connection.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS versions enabled for a minimum version.
pub fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static NEWEST: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        TlsVersion::V12 => &BOTH,
        TlsVersion::V13 => &NEWEST,
    }
}

/// What a session knows of its TLS, for `Received` and tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite, by its IANA name.
    pub cipher: String,
    /// The session's `tls-exporter` channel binding (RFC 9266): 32 octets that both ends of
    /// one TLS session compute alike and that differ on each side of a relay that terminates
    /// TLS. The organization's proofs cover it (crate::org::auth).
    pub binding: Option<[u8; 32]>,
}

impl std::fmt::Display for TlsInfo {
    /// `TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384`, the words Postfix puts in `Received`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} with cipher {}", self.version, self.cipher)
    }
}

impl TlsInfo {
    /// The facts of an established connection (a `ClientConnection` or `ServerConnection`).
    pub fn of<D>(c: &rustls::ConnectionCommon<D>) -> TlsInfo {
        let binding = c
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok();
        TlsInfo {
            binding,
            ..TlsInfo::facts(c)
        }
    }

    fn facts(c: &rustls::CommonState) -> TlsInfo {
        let version = match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "TLS".to_string(),
        };
        let cipher = c
            .negotiated_cipher_suite()
            .map(|s| {
                let s = s.suite();
                s.as_str().map(str::to_string).unwrap_or(format!("{s:?}"))
            })
            .unwrap_or_else(|| "unknown".into());
        TlsInfo {
            version,
            cipher,
            binding: None,
        }
    }
}

/// The files' identity: size and modification time of each.
type Stamp = Option<(u64, SystemTime, u64, SystemTime)>;

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let c = std::fs::metadata(cert).ok()?;
    let k = std::fs::metadata(key).ok()?;
    Some((c.len(), c.modified().ok()?, k.len(), k.modified().ok()?))
}

struct Loaded {
    stamp: Stamp,
    /// The configuration in use, or why there is none.
    current: Result<TlsAcceptor, TlsError>,
}

/// The server side of TLS: the certificate of every listener, reloaded when its files change.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    min: TlsVersion,
    /// The handshake's time limit.
    pub handshake_timeout: std::time::Duration,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Tls {
    /// The TLS of a server whose data directory is `data`; the files are read at once.
    pub fn new(data: &Path, config: &TlsConfig) -> Arc<Tls> {
        let cert = data.join(&config.certificate);
        let key = data.join(&config.private_key);
        let first = stamp(&cert, &key);
        let current = server_config(&cert, &key, config.min_version);
        Arc::new(Tls {
            cert,
            key,
            min: config.min_version,
            handshake_timeout: config.handshake_timeout,
            loaded: Mutex::new(Loaded {
                stamp: first,
                current,
            }),
        })
    }

    /// The acceptor for a new session, with the certificate as the files are now; why TLS
    /// cannot be used, if it cannot.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let now = stamp(&self.cert, &self.key);
        let Ok(mut l) = self.loaded.lock() else {
            return Err(TlsError::Invalid("TLS state poisoned".into()));
        };
        if now != l.stamp {
            l.stamp = now;
            match server_config(&self.cert, &self.key, self.min) {
                Ok(a) => {
                    if l.current.is_ok() {
                        tracing::info!(file = %self.cert.display(), "certificate reloaded");
                    }
                    l.current = Ok(a);
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate not (re)loaded");
                    if l.current.is_err() {
                        l.current = Err(e);
                    }
                }
            }
        }
        l.current.clone()
    }

    /// Whether TLS can be used now.
    pub fn available(&self) -> bool {
        self.acceptor().is_ok()
    }
}

/// A newly accepted connection as a listener takes it: in clear, or (`implicit`) after the
/// TLS handshake, within its time limit; `None` (logged) when the handshake failed.
pub async fn accept<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: Option<&Tls>,
    stream: S,
    implicit: bool,
    peer: std::net::SocketAddr,
) -> Option<Stream<S>> {
    if !implicit {
        return Some(Stream::Plain(stream));
    }
    match handshake(tls, stream).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// The server side of an implicit-TLS connection: the handshake, within the time limit.
async fn handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: Option<&Tls>,
    stream: S,
) -> std::io::Result<Stream<S>> {
    let Some(tls) = tls else {
        return Err(std::io::Error::other("TLS is not configured"));
    };
    let acceptor = tls.acceptor().map_err(std::io::Error::other)?;
    let mut s = Stream::Plain(stream);
    s.start_tls(&acceptor, tls.handshake_timeout).await?;
    Ok(s)
}

/// Reads a certificate chain and its key and checks that they belong together.
pub fn server_config(cert: &Path, key: &Path, min: TlsVersion) -> Result<TlsAcceptor, TlsError> {
    let read = |file: &Path| {
        std::fs::read(file).map_err(|e| TlsError::Read {
            file: file.display().to_string(),
            reason: e.to_string(),
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsError::Invalid(format!("{}: not a PEM certificate: {e}", cert.display()))
        })?;
    if chain.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Invalid(format!("{}: not a PEM private key: {e}", key.display())))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            TlsError::Invalid(format!(
                "{} and {} do not make a usable certificate: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Makes a self-signed certificate for `hostname` (also valid for `localhost`, 127.0.0.1 and
/// ::1, so that local clients can verify it), valid for ten years, and writes it with its key
/// (mode 0600) to the given files, making their directory.
pub fn self_signed(hostname: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    use chrono::Datelike;
    let invalid = |e: rcgen::Error| TlsError::Invalid(format!("cannot make a certificate: {e}"));
    let mut names = vec![hostname.to_string()];
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(invalid)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let today = chrono::Utc::now().date_naive();
    let (y, m, d) = (today.year(), today.month() as u8, today.day().min(28) as u8);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 10, m, d);
    let pair = rcgen::KeyPair::generate().map_err(invalid)?;
    let c = params.self_signed(&pair).map_err(invalid)?;
    let write = |file: &Path, text: &str, mode: u32| -> Result<(), TlsError> {
        let err = |e: std::io::Error| TlsError::Read {
            file: file.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        crate::fsutil::write_atomic(file, text.as_bytes(), mode).map_err(err)
    };
    write(key, &pair.serialize_pem(), 0o600)?;
    write(cert, &c.pem(), 0o644)
}

/// A client configuration that trusts exactly the certificates in `roots` (PEM), for the
/// tests and for `doctor`'s probes of this server's own listeners.
pub fn client_trusting(roots_pem: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots_pem) {
        let c = c.map_err(|e| TlsError::Invalid(format!("not a PEM certificate: {e}")))?;
        roots
            .add(c)
            .map_err(|e| TlsError::Invalid(format!("unusable root certificate: {e}")))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(TlsVersion::V12))
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A certificate file's `notAfter` (its first certificate, the leaf), in Unix seconds.
pub fn not_after(path: &Path) -> Option<i64> {
    let pem = std::fs::read(path).ok()?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = p.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests;
