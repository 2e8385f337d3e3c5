//! `[tls]` and `[submission]`: the certificate, the TLS versions, and the authenticated
//! submission service (RFC 6409, RFC 8314).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[tls]`: the certificate every TLS listener presents, and the versions accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first; a relative path is inside the data directory.
    /// It is read again when the file changes (checked at each new TLS session).
    pub certificate: PathBuf,
    /// The private key of the leaf certificate, PEM (PKCS #8, PKCS #1 or SEC1).
    pub private_key: PathBuf,
    /// The oldest TLS version accepted: "1.2" or "1.3". TLS 1.0 and 1.1 are never accepted
    /// (RFC 8996).
    pub min_version: TlsVersion,
    /// Waiting for a client to finish the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// `[tls.acme]`: get the certificate from an ACME CA (RFC 8555) and renew it before it
    /// expires; absent: the files above are the administrator's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeConfig>,
}

/// `[tls.acme]`: a certificate from an ACME CA (Let's Encrypt, or any RFC 8555 CA), written
/// into `tls.certificate` and `tls.private_key`, which every listener reads again when they
/// change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    /// The CA's directory URL (Let's Encrypt: `https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    /// Contact URLs for the account (`mailto:postmaster@example.com`).
    pub contact: Vec<String>,
    /// The names on the certificate; empty: `server.hostname`.
    pub names: Vec<String>,
    /// The challenge: `http-01` (RFC 8555 §8.3), answered on `http_listen`.
    pub challenge: String,
    /// Where the `http-01` answers are served (port 80 for a public CA).
    pub http_listen: SocketAddr,
    /// A certificate is renewed when it expires within this.
    #[serde(with = "humantime_serde")]
    pub renew_before: Duration,
    /// How often the certificate is looked at (and a failed attempt tried again).
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// A CA certificate (PEM) to trust for the directory's HTTPS instead of the system's
    /// roots: for a private or test CA (a relative path is inside the data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PathBuf>,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory: String::new(),
            contact: Vec::new(),
            names: Vec::new(),
            challenge: "http-01".into(),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 80)),
            renew_before: Duration::from_secs(30 * 86400),
            check_interval: Duration::from_secs(12 * 3600),
            ca_certificate: None,
        }
    }
}

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246) and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    V12,
    /// TLS 1.3 (RFC 8446) only.
    #[serde(rename = "1.3")]
    V13,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificate: PathBuf::from("tls/cert.pem"),
            private_key: PathBuf::from("tls/key.pem"),
            min_version: TlsVersion::V12,
            handshake_timeout: Duration::from_secs(30),
            acme: None,
        }
    }
}

/// Where POP3 (and later IMAP) accepts a password sent without TLS.
///
/// The default follows Dovecot's: passwords in clear are refused, except from the loopback
/// address, whose traffic never crosses a network.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PlaintextLogin {
    /// Only over TLS (STLS, or the implicit-TLS listener).
    Never,
    /// Over TLS, or from a loopback address.
    #[default]
    Loopback,
    /// Everywhere: only behind a proxy that does the TLS, or on a network that is trusted.
    Always,
}

/// `[submission]`: the message submission service (RFC 6409) for users' mail programs. Every
/// session must authenticate (SMTP AUTH, RFC 4954), and AUTH is offered only under TLS; an
/// authenticated user may send anywhere, as their own addresses only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionConfig {
    /// Addresses where sessions start in clear and must use STARTTLS (RFC 3207) before AUTH.
    pub listen: Vec<SocketAddr>,
    /// Addresses where sessions start with TLS ("submissions", RFC 8314 §3.3).
    pub tls_listen: Vec<SocketAddr>,
    /// Simultaneous connections, in total and from one client address.
    pub max_connections: usize,
    /// ...from one client address (an IPv6 client: its /64).
    pub max_connections_per_ip: usize,
    /// Simultaneous connections from one network (an IPv4 /24, an IPv6 /48) together.
    pub max_connections_per_network: usize,
    /// Failed AUTH attempts in one session before it is closed.
    pub max_auth_failures: u32,
    /// Pause before answering the first failed AUTH; it doubles with each further failure
    /// from the same address or for the same account, up to `max_auth_failure_delay`.
    #[serde(with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// The longest such pause.
    #[serde(with = "humantime_serde")]
    pub max_auth_failure_delay: Duration,
    /// Failed AUTH attempts from one client address, across sessions, before it is locked out.
    pub max_auth_failures_per_ip: u32,
    /// Failed AUTH attempts for one account, from anywhere, before it is locked out.
    pub max_auth_failures_per_account: u32,
    /// How long a lockout lasts after the last failure.
    #[serde(with = "humantime_serde")]
    pub auth_lockout: Duration,
    /// Whether the envelope sender and every `From` address must be the user's own (or an
    /// alias of theirs); else `553 5.7.1`.
    pub check_sender: bool,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2587))],
            tls_listen: vec![SocketAddr::from(([127, 0, 0, 1], 2465))],
            max_connections: 500,
            max_connections_per_ip: 20,
            max_connections_per_network: 50,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(2),
            max_auth_failure_delay: Duration::from_secs(30),
            max_auth_failures_per_ip: 10,
            max_auth_failures_per_account: 20,
            auth_lockout: Duration::from_secs(600),
            check_sender: true,
        }
    }
}

/// `[sender_auth]`: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617) on mail
/// from outside, reported in an `Authentication-Results` header (RFC 8601).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SenderAuthConfig {
    /// Whether mail from outside clients is checked.
    pub verify: bool,
    /// What a DMARC failure does.
    pub dmarc_policy: DmarcAction,
    /// Messages larger than this (octets) are not checked for DKIM (the check reads the whole
    /// message into memory); they get `dkim=neutral`, and DMARC is decided by SPF alone. The
    /// default is `smtp.max_message_size`'s, so that every message is checked.
    pub max_verify_size: u64,
}

impl Default for SenderAuthConfig {
    fn default() -> Self {
        SenderAuthConfig {
            verify: true,
            dmarc_policy: DmarcAction::Enforce,
            max_verify_size: 25 * 1024 * 1024,
        }
    }
}

/// What a DMARC failure does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DmarcAction {
    /// The domain's policy is followed: `p=reject` is refused with `550 5.7.1`; `p=quarantine`
    /// is accepted and marked (a Junk folder when IMAP comes).
    #[default]
    Enforce,
    /// Only reported, in `Authentication-Results` and tracking.
    Monitor,
}

/// `[dkim]`: signing of mail sent from this server's domains (RFC 6376).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// Whether mail submitted by users (and local programs) is signed, for every domain that
    /// has a key (`mailroom dkim generate DOMAIN` makes one).
    pub sign: bool,
    /// The selector of the keys in use: the key of domain D is `DATA/dkim/D.SELECTOR.key`, its
    /// public part is published at `SELECTOR._domainkey.D`.
    pub selector: String,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            sign: true,
            selector: "mailroom".into(),
        }
    }
}
