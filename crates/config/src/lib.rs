//! The configuration file (`DATA/mailroom.toml`): types, defaults, loading and validation.
//!
//! Every limit the server enforces is here, with its default and the RFC it comes from. Loading
//! refuses unknown keys and bad values and says which file, which key and why, so a typo never
//! silently becomes a default. [`template`] writes the commented file that `mailroom init` creates.
//!
//! A crate of its own, apart from the server, so that the fuzz targets of the loader and of the
//! config store's backups build without the server's dependencies (SQLite, TLS, DNS); the
//! server re-exports it as `mailroom::config`.

#![forbid(unsafe_code)]
// A slice of a string at a byte index panics inside a character: text that peers and files
// control is cut with `split_once`, `strip_prefix` or `get` instead (issue 21: a folder name).
#![deny(clippy::string_slice)]

pub mod history;
mod registrations;
mod security;
mod template;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use registrations::{
    standard_extensions, standard_services, LogConfig, LogFormat, LogTarget, MetricsConfig,
    ServiceDef, StoreConfig, SupervisorConfig, ORG_EXTENSIONS, RETIRED_SERVICES, SERVICES,
    STANDARD_EXTENSIONS,
};
pub use security::{
    AcmeConfig, DkimConfig, DmarcAction, PlaintextLogin, SenderAuthConfig, SubmissionConfig,
    TlsConfig, TlsVersion,
};
pub use template::{template, Listen};

/// The file name of the configuration inside the data directory.
pub const FILE_NAME: &str = "mailroom.toml";

/// A configuration that could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key is unknown, mistyped or has a bad value.
    #[error("{file}: {key}: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The dotted key path (`smtp.max_recipients`), or `(file)` for syntax errors.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Parses `host:port` (or `host`, or `[ip]:port`), with a default port.
pub fn parse_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()?),
        _ => (s, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_lowercase(), port))
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity of this server.
    pub server: ServerConfig,
    /// SMTP receive.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// Message submission for users' mail programs (AUTH required).
    #[serde(default)]
    pub submission: SubmissionConfig,
    /// POP3 access.
    #[serde(default)]
    pub pop3: Pop3Config,
    /// IMAP access.
    #[serde(default)]
    pub imap: ImapConfig,
    /// The certificate and TLS versions of every TLS listener.
    #[serde(default)]
    pub tls: TlsConfig,
    /// SPF, DKIM and DMARC checks of mail from outside.
    #[serde(default)]
    pub sender_auth: SenderAuthConfig,
    /// DKIM signing of mail sent from this server's domains.
    #[serde(default)]
    pub dkim: DkimConfig,
    /// Queue and delivery.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Outbound SMTP.
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// DNS resolution for outbound mail.
    #[serde(default)]
    pub dns: DnsConfig,
    /// The organization's timers (membership itself is in the store: `mailroom org`).
    #[serde(default)]
    pub org: OrgConfig,
    /// `[services.NAME]`: the services this server runs, and what runs each. Absent (a file
    /// from before services were defined): every standard service, as defined by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<std::collections::BTreeMap<String, ServiceDef>>,
    /// How failed services are tried again.
    #[serde(default)]
    pub supervisor: SupervisorConfig,
    /// The config store's own settings (history kept).
    #[serde(default)]
    pub config: StoreConfig,
    /// The log: where it goes, and in what form.
    #[serde(default)]
    pub log: LogConfig,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[org]`: how this server keeps the organization's link state (see the server's `org` module).
///
/// A peer that stops answering is published DOWN after at most `probe_interval` +
/// `glitch_retries` × `glitch_retry` (by default 60 s + 3 × 60 s); every other server learns
/// of it at once, as changes are pushed when they happen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OrgConfig {
    /// How often each peer is contacted (state compared, link probed) when nothing changes.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// After a failed contact, this many more attempts, this far apart, before the peer is DOWN.
    pub glitch_retries: u32,
    /// The wait between those attempts.
    #[serde(with = "humantime_serde")]
    pub glitch_retry: Duration,
    /// A peer that came back is published UP no sooner than this after it went DOWN.
    #[serde(with = "humantime_serde")]
    pub damping: Duration,
    /// A message handed to another server of the organization is kept as a shadow until that
    /// server says it is delivered or passed on; if the server is DOWN and has not said so
    /// after this long, the shadow is sent again over another route.
    #[serde(with = "humantime_serde")]
    pub shadow_timeout: Duration,
    /// Connecting to another server of the organization, and waiting for each of its replies.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Each reply on the organization channel.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
}

impl Default for OrgConfig {
    fn default() -> Self {
        OrgConfig {
            probe_interval: Duration::from_secs(60),
            glitch_retries: 3,
            glitch_retry: Duration::from_secs(60),
            damping: Duration::from_secs(60),
            shadow_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This server's fully qualified name: the greeting, `Received` headers, `Reporting-MTA`.
    pub hostname: String,
    /// The domains whose mail is delivered here (local domains). The first is the primary
    /// domain: `<postmaster>` without a domain means `postmaster@` it.
    pub domains: Vec<String>,
    /// Password verifications (Argon2id) run at once, at most; 0: one per core. Each costs tens
    /// of milliseconds of a core and 19 MiB, so a flood of logins queues for them.
    #[serde(default)]
    pub max_password_checks: usize,
    /// The domain that a bare local name (`root`, `alice`) given to `sendmail` is completed
    /// with, and that local programs' senders (`user@` it) have: Postfix's `myorigin`.
    /// Absent: the primary domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// `[smtp]`: the receive service and its limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Whether STARTTLS (RFC 3207) is offered, when a certificate is available.
    pub starttls: bool,
    /// Largest message accepted, in octets (advertised as SIZE, RFC 1870).
    pub max_message_size: u64,
    /// Recipients per message (RFC 5321 §4.5.3.1.8 requires at least 100).
    pub max_recipients: usize,
    /// Longest command line, octets with CRLF (RFC 5321 §4.5.3.1.4: at least 512).
    pub max_command_line: usize,
    /// Longest text line in a message, octets with CRLF (RFC 5321 §4.5.3.1.6: 1000).
    pub max_text_line: usize,
    /// Simultaneous connections, in total.
    pub max_connections: usize,
    /// Simultaneous connections from one client IP address.
    pub max_connections_per_ip: usize,
    /// Simultaneous connections from one network (an IPv4 /24, an IPv6 /48) together: many
    /// addresses of one holder cannot take every slot (issue 21).
    pub max_connections_per_network: usize,
    /// Message text must come at least this fast (octets a second, averaged): DATA may take
    /// `data_timeout` plus a second per this many octets, whatever the pauses (Postfix's
    /// `smtpd_min_data_rate`); a client that trickles is cut off.
    pub min_data_rate: u64,
    /// Errors in one session after which the server says 421 and disconnects.
    pub max_errors: u32,
    /// Waiting for a command (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Waiting for the next block of message text (RFC 5321 §4.5.3.2.5: 3 minutes for the client;
    /// the server's own limit is this).
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    /// Waiting for the client to take the replies written to it: one that pipelines commands
    /// and never reads is dropped after this.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Most `Received` headers a message may already carry (a loop, RFC 5321 §6.3: `554 5.4.6`).
    pub max_received_headers: usize,
    /// Networks whose clients may relay to non-local domains. Default: none.
    pub trusted_networks: Vec<IpNet>,
    /// Networks of clients inside (by default this machine; `trusted_networks` are inside too):
    /// their mail is not checked for SPF, DKIM and DMARC, they may use a local domain in MAIL
    /// FROM, and they are not rate-limited. Everyone else is outside.
    pub inside_networks: Vec<IpNet>,
    /// Whether an outside client that has not logged in may give a local domain in MAIL FROM
    /// (Exchange: "anonymous users cannot send as an authoritative domain").
    pub local_senders_from_outside: LocalSenders,
    /// New connections from one outside client address per minute, at most (0: no limit).
    pub max_connection_rate: u32,
    /// Messages (MAIL commands) from one outside client address per minute, at most (0: no
    /// limit).
    pub max_message_rate: u32,
    /// How a recipient whose mailbox is already full is refused at RCPT.
    pub full_mailbox: FullMailbox,
    /// Most final recipients one address (a list, an alias) may expand to; past it the
    /// address is refused (`550 5.5.3`).
    pub max_expansion: usize,
    /// Deepest nesting of lists and aliases followed.
    pub max_expansion_depth: usize,
    /// Message texts larger than this (octets) are written to a spool file as they arrive
    /// instead of being held in memory; smaller ones are stored in the database.
    pub spool_threshold: usize,
    /// ESMTP extensions not registered (their keywords): not advertised, not accepted. A
    /// server of an organization without `X-ORG-AUTH` cannot take part in it.
    pub disabled_extensions: Vec<String>,
    /// The extension registrations: the EHLO keywords this service offers (their parameters,
    /// such as SIZE's, come from the limits above). Absent (a file from before registrations
    /// were kept here): the standard set. A keyword missing from the list is not offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
}

/// What an outside client that has not logged in may give as a sender in a local domain.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LocalSenders {
    /// Refused with `550 5.7.1`: mail from a local address comes from inside, or from a user
    /// who logged in on the submission service.
    #[default]
    Refuse,
    /// Accepted (sender authentication still judges it).
    Accept,
}

impl Config {
    /// Whether a client address is inside (see [`SmtpConfig::inside_networks`]).
    pub fn is_inside(&self, ip: std::net::IpAddr) -> bool {
        let s = &self.smtp;
        s.inside_networks.iter().any(|n| n.contains(&ip))
            || s.trusted_networks.iter().any(|n| n.contains(&ip))
    }
}

/// The reply at RCPT for a mailbox that is already full (or has no room for the SIZE the client
/// declared, RFC 1870 §6).
///
/// Refusing at RCPT, rather than accepting and then reporting, is what keeps a server from
/// sending reports to forged senders (backscatter): the client's own server, which knows the
/// real sender, keeps the message or tells its sender. The default is temporary: a full mailbox
/// is usually emptied soon, and the sending server retries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FullMailbox {
    /// `452 4.2.2` (RFC 3463: mailbox full, a temporary condition).
    #[default]
    Temporary,
    /// `552 5.2.2`. RFC 5321 §4.5.3.1.10 asks clients to treat a 552 at RCPT as temporary too;
    /// RFC 3463's 5.2.2 tells the sender's server to give up.
    Permanent,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            starttls: true,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_text_line: 1000,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_connections_per_network: 100,
            min_data_rate: 500,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            write_timeout: Duration::from_secs(120),
            max_received_headers: 15,
            trusted_networks: Vec::new(),
            inside_networks: vec![
                "127.0.0.0/8".parse().expect("network"),
                "::1/128".parse().expect("network"),
            ],
            local_senders_from_outside: LocalSenders::Refuse,
            max_connection_rate: 120,
            max_message_rate: 300,
            full_mailbox: FullMailbox::Temporary,
            spool_threshold: 128 * 1024,
            max_expansion: 10_000,
            max_expansion_depth: 20,
            disabled_extensions: Vec::new(),
            extensions: None,
        }
    }
}

/// `[pop3]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Addresses to listen on (STLS offered, RFC 2595).
    pub listen: Vec<SocketAddr>,
    /// Addresses where sessions start with TLS ("POP3S", RFC 8314 §3.3).
    pub tls_listen: Vec<SocketAddr>,
    /// Where a password may be sent without TLS.
    pub plaintext_login: PlaintextLogin,
    /// Pause before answering a failed login, against password guessing.
    #[serde(with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// Inactivity after which the session is closed (RFC 1939 §3: at least 10 minutes).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Simultaneous connections in total.
    pub max_connections: usize,
    /// Failed logins in one session before it is closed.
    pub max_auth_failures: u32,
    /// Simultaneous connections from one client address (an IPv6 client: its /64).
    pub max_connections_per_ip: usize,
    /// Simultaneous connections from one network (an IPv4 /24, an IPv6 /48) together.
    pub max_connections_per_network: usize,
    /// Failed logins from one client address, across sessions, before it is locked out...
    pub max_auth_failures_per_ip: u32,
    /// Failed logins for one account, from anywhere, before it is locked out...
    pub max_auth_failures_per_account: u32,
    /// The pause after a failed login doubles with each further failure from the address or
    /// for the account, up to this.
    #[serde(with = "humantime_serde")]
    pub max_auth_failure_delay: Duration,
    /// ...for this long after its last failure.
    #[serde(with = "humantime_serde")]
    pub auth_lockout: Duration,
    /// Waiting for the client to take what is written to it.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2110))],
            tls_listen: vec![SocketAddr::from(([127, 0, 0, 1], 2995))],
            plaintext_login: PlaintextLogin::Loopback,
            auth_failure_delay: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(600),
            max_connections: 500,
            max_auth_failures: 3,
            max_connections_per_ip: 50,
            max_connections_per_network: 100,
            max_auth_failures_per_ip: 10,
            max_auth_failures_per_account: 20,
            max_auth_failure_delay: Duration::from_secs(30),
            auth_lockout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(120),
        }
    }
}

/// `[imap]`: IMAP4rev2/IMAP4rev1 access (RFC 9051, RFC 3501). Failed logins are counted with
/// the POP3 and submission ones, under these limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Addresses to listen on (STARTTLS offered, RFC 9051 §6.2.1).
    pub listen: Vec<SocketAddr>,
    /// Addresses where sessions start with TLS ("IMAPS", RFC 8314 §3.3).
    pub tls_listen: Vec<SocketAddr>,
    /// Where a password may be sent without TLS (otherwise LOGINDISABLED, RFC 9051 §6.2.3).
    pub plaintext_login: PlaintextLogin,
    /// Pause before answering a failed login.
    #[serde(with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// Inactivity after which the session is closed (RFC 9051 §5.4: at least 30 minutes; an
    /// IDLE client re-issues IDLE within it).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Inactivity before login after which the session is closed.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Simultaneous connections in total.
    pub max_connections: usize,
    /// Simultaneous connections from one client address (an IPv6 client: its /64).
    pub max_connections_per_ip: usize,
    /// Simultaneous connections from one network (an IPv4 /24, an IPv6 /48) together.
    pub max_connections_per_network: usize,
    /// Failed logins in one session before it is closed.
    pub max_auth_failures: u32,
    /// Failed logins from one client address, across sessions and protocols, before it is
    /// locked out...
    pub max_auth_failures_per_ip: u32,
    /// Failed logins for one account before it is locked out...
    pub max_auth_failures_per_account: u32,
    /// The pause after a failed login doubles with each further failure, up to this.
    #[serde(with = "humantime_serde")]
    pub max_auth_failure_delay: Duration,
    /// ...for this long after its last failure.
    #[serde(with = "humantime_serde")]
    pub auth_lockout: Duration,
    /// Waiting for the client to take what is written to it.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Longest command line (RFC 7162 §4: at least 8192 octets).
    pub max_line: usize,
    /// Largest literal, and so the largest message APPEND takes (APPENDLIMIT, RFC 7889).
    pub max_literal: u64,
    /// Commands a session may run per second, sustained: a token bucket that fills at this
    /// rate up to `command_burst`; a session that empties it is slowed to this rate.
    pub max_commands_per_second: u32,
    /// Commands a session may run at once before the rate applies: more than a sync client
    /// issues (mbsync sends a UID FETCH per message), so that only a flood meets it.
    pub command_burst: u32,
    /// Expunged UIDs each folder remembers, for QRESYNC's `VANISHED` (RFC 7162 §3.2.5.1); the
    /// oldest are forgotten past it. A client that resynchronizes from before what is
    /// remembered is told every UID it may know that is gone (computed from the UIDs still
    /// there), which is correct but longer.
    pub expunge_history: u64,
    /// Keywords a folder may have (its FLAGS): a STORE, APPEND or COPY that would define more
    /// is refused with `NO [LIMIT]` (RFC 5530), and PERMANENTFLAGS drops `\*` once it is
    /// reached (RFC 9051 §7.1). Bounds what one user can make every SELECT carry.
    pub max_keywords_per_folder: u32,
    /// Keywords one message may carry.
    pub max_keywords_per_message: u32,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2143))],
            tls_listen: vec![SocketAddr::from(([127, 0, 0, 1], 2993))],
            plaintext_login: PlaintextLogin::Loopback,
            auth_failure_delay: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_connections_per_network: 100,
            max_auth_failures: 3,
            max_auth_failures_per_ip: 10,
            max_auth_failures_per_account: 20,
            max_auth_failure_delay: Duration::from_secs(30),
            auth_lockout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(120),
            max_line: 65_536,
            max_literal: 25 * 1024 * 1024,
            max_commands_per_second: 1000,
            command_burst: 50_000,
            expunge_history: 100_000,
            max_keywords_per_folder: 1000,
            max_keywords_per_message: 100,
        }
    }
}

/// `[queue]`: delivery concurrency and the timers of retries, delay reports and expiry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Messages delivered at the same time.
    pub delivery_concurrency: usize,
    /// How often the queue is checked for work that has come due (retries, reports).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Waits between attempts after a transient failure; the last one repeats. Exchange's
    /// default: 10, 10, 10 minutes, then every 15 minutes.
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Random spread of each retry wait, as a fraction (0.1 = ±10%), so that retries to one
    /// destination do not all come at once.
    pub retry_jitter: f64,
    /// After a connection could not be made or broke off, the first retries come sooner
    /// ("glitch retry"): this many of them...
    pub glitch_retries: u32,
    /// ...this far apart.
    #[serde(with = "humantime_serde")]
    pub glitch_retry: Duration,
    /// Age at which the sender is told that delivery is delayed (if NOTIFY asks for DELAY).
    #[serde(with = "humantime_serde")]
    pub delay_notification: Duration,
    /// Age at which delivery is given up and the sender gets a non-delivery report.
    #[serde(with = "humantime_serde")]
    pub expiry: Duration,
    /// Legacy (before `poll_interval`): accepted so that older files still load, and otherwise
    /// ignored; the server warns about it at start-up.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub scan_interval: Option<Duration>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        QueueConfig {
            delivery_concurrency: 64,
            poll_interval: Duration::from_secs(1),
            retry_schedule: vec![min(10), min(10), min(10), min(15)],
            retry_jitter: 0.1,
            glitch_retries: 3,
            glitch_retry: Duration::from_secs(60),
            delay_notification: Duration::from_secs(12 * 3600),
            expiry: Duration::from_secs(2 * 86400),
            scan_interval: None,
        }
    }
}

/// A list of durations written like `["10m", "1h"]`.
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v: Vec<String> = Vec::deserialize(d)?;
        v.iter()
            .map(|s| {
                humantime::parse_duration(s)
                    .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
            })
            .collect()
    }
}

/// `[outbound]`: delivery to other servers over SMTP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Send all outbound mail through this server (`host:port`) instead of looking up MX records.
    pub smart_host: Option<String>,
    /// Smart hosts for particular domains (`"example.org" = "relay.example.net:25"`).
    pub smart_hosts: std::collections::BTreeMap<String, String>,
    /// The port of servers found by MX lookup (25; tests use others).
    pub port: u16,
    /// The name this server gives in EHLO (default: `server.hostname`).
    pub helo_name: Option<String>,
    /// Opportunistic STARTTLS (RFC 3207, RFC 7435): TLS whenever the next server offers it,
    /// without requiring its certificate to verify; in clear when it does not.
    pub starttls: bool,
    /// Messages sent over one connection before it is closed (Exchange: 20).
    pub max_messages_per_connection: u32,
    /// Simultaneous outbound connections, in total (Exchange: 1,000).
    pub max_connections: usize,
    /// Simultaneous outbound connections to one destination (Exchange: 100).
    pub max_connections_per_domain: usize,
    /// Waiting for a TCP connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Waiting for the greeting and for replies to EHLO, MAIL and RCPT (RFC 5321 §4.5.3.2: 5 min).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Waiting for the reply to DATA (RFC 5321 §4.5.3.2.4: 2 minutes).
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    /// Sending each block of message text (RFC 5321 §4.5.3.2.5: 3 minutes).
    #[serde(with = "humantime_serde")]
    pub block_timeout: Duration,
    /// Waiting for the reply after the end of the message (RFC 5321 §4.5.3.2.6: 10 minutes).
    #[serde(with = "humantime_serde")]
    pub data_end_timeout: Duration,
    /// Keeping an idle connection open for the next message to the same destination.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            smart_host: None,
            smart_hosts: Default::default(),
            port: 25,
            helo_name: None,
            starttls: true,
            max_messages_per_connection: 20,
            max_connections: 1000,
            max_connections_per_domain: 100,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(120),
            block_timeout: Duration::from_secs(180),
            data_end_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// `[dns]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers to ask (`ip:port`); empty means the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
}

impl Config {
    /// A configuration with defaults for the given domain and hostname.
    pub fn new(domain: &str, hostname: &str) -> Config {
        Config {
            server: ServerConfig {
                hostname: hostname.to_string(),
                domains: vec![domain.to_string()],
                max_password_checks: 0,
                origin: None,
            },
            smtp: SmtpConfig {
                extensions: Some(standard_extensions()),
                ..SmtpConfig::default()
            },
            submission: SubmissionConfig::default(),
            pop3: Pop3Config::default(),
            imap: ImapConfig::default(),
            tls: TlsConfig::default(),
            sender_auth: SenderAuthConfig::default(),
            dkim: DkimConfig::default(),
            queue: QueueConfig::default(),
            outbound: OutboundConfig::default(),
            dns: DnsConfig::default(),
            org: OrgConfig::default(),
            services: Some(standard_services()),
            supervisor: SupervisorConfig::default(),
            config: StoreConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }

    /// Reads and validates a configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Config::parse(&text, file)
    }

    /// Parses and validates configuration text; `file` is used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            reason,
        };
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." || key.is_empty() {
                "(file)".to_string()
            } else {
                key
            };
            invalid(key, e.into_inner().message().trim().to_string())
        })?;
        cfg.validate().map_err(|(k, r)| invalid(k.to_string(), r))?;
        Ok(cfg)
    }

    /// Serializes the configuration back to TOML (what `config` commands will write).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Settings that are accepted but no longer have an effect, as (key, advice).
    pub fn legacy_settings(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.queue.scan_interval.is_some() {
            out.push((
                "queue.scan_interval",
                "no longer used: the queue is checked every queue.poll_interval; remove it",
            ));
        }
        out
    }

    /// The extensions registered: the list in the config store (or the standard set for a file
    /// without one), less `smtp.disabled_extensions`, upper case, in EHLO order.
    pub fn registered_extensions(&self) -> Vec<String> {
        let listed = self
            .smtp
            .extensions
            .clone()
            .unwrap_or_else(standard_extensions);
        STANDARD_EXTENSIONS
            .iter()
            .filter(|k| listed.iter().any(|l| l.eq_ignore_ascii_case(k)))
            .filter(|k| {
                !self
                    .smtp
                    .disabled_extensions
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(k))
            })
            .map(|k| k.to_string())
            .collect()
    }

    /// The service definitions in effect: the file's, or the standard ones for a file without
    /// a `[services]` table.
    pub fn service_defs(&self) -> std::collections::BTreeMap<String, ServiceDef> {
        self.services.clone().unwrap_or_else(standard_services)
    }

    /// True when `domain` (lower case) is one of this server's local domains.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.server
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The primary local domain.
    pub fn primary_domain(&self) -> &str {
        &self.server.domains[0]
    }

    /// The origin domain: `server.origin`, or the primary domain.
    pub fn origin(&self) -> &str {
        self.server
            .origin
            .as_deref()
            .unwrap_or(self.primary_domain())
    }
}

/// The loader's invariants over arbitrary input, for the fuzz target and its corpus replay:
/// loading never panics, whatever the bytes; a configuration that loads survives being written
/// back and loaded again unchanged.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.toml");
    if let Ok(cfg) = Config::parse(text, file) {
        let _ = cfg.legacy_settings();
        let again = cfg
            .to_toml()
            .map(|t| Config::parse(&t, file).map_err(|e| e.to_string()));
        match again {
            Ok(Ok(c)) => assert_eq!(c, cfg),
            Ok(Err(e)) => panic!("a loaded configuration does not load again: {e}"),
            Err(_) => {}
        }
    }
}

/// Replays every saved fuzzing input of one target (`fuzz/corpus/NAME`) through its invariant
/// check, so that a crash the fuzzer once found stays fixed.
#[cfg(test)]
fn replay_corpus(name: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let ok = std::panic::catch_unwind(|| check(&data));
        assert!(ok.is_ok(), "{} broke an invariant", path.display());
        n += 1;
    }
    assert!(n > 0, "the corpus {name} is empty");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("mailroom.toml"))
    }

    /// Every saved fuzzing input of the loader (fuzz/corpus/config) keeps its invariants.
    #[test]
    fn the_fuzz_corpus_replays() {
        crate::replay_corpus("config", check);
    }

    #[test]
    fn template_parses_to_defaults() {
        let cfg = parse(&template(
            "example.com",
            "mx.example.com",
            &Listen::default(),
        ))
        .unwrap();
        assert_eq!(cfg, Config::new("example.com", "mx.example.com"));
        let addr: SocketAddr = "127.0.0.1:9925".parse().unwrap();
        let listen = Listen {
            smtp: Some(addr),
            submissions: Some("127.0.0.1:9465".parse().unwrap()),
            ..Listen::default()
        };
        let cfg = parse(&template("example.com", "mx.example.com", &listen)).unwrap();
        assert_eq!(cfg.smtp.listen, vec![addr]);
        assert_eq!(cfg.submission.tls_listen, vec![listen.submissions.unwrap()]);
    }

    /// Values too large for the arithmetic done with them later are refused at load, and the
    /// largest accepted ones go through that arithmetic without overflowing.
    #[test]
    fn out_of_range_values_are_refused_and_the_largest_accepted_do_not_overflow() {
        let base = "[server]\nhostname = \"mx.example.com\"\ndomains = [\"example.com\"]\n";
        let cases: &[(&str, &str)] = &[
            (
                "[queue]\nretry_schedule = [\"100000000years\"]\n",
                "queue.retry_schedule",
            ),
            ("[queue]\nexpiry = \"5000years\"\n", "queue.expiry"),
            (
                "[queue]\nglitch_retry = \"400days\"\n",
                "queue.glitch_retry",
            ),
            (
                "[queue]\npoll_interval = \"3days\"\n",
                "queue.poll_interval",
            ),
            (
                "[smtp]\nmax_message_size = 1099511627777\n",
                "smtp.max_message_size",
            ),
            (
                "[smtp]\ncommand_timeout = \"9999999999years\"\n",
                "smtp.command_timeout",
            ),
            (
                "[smtp]\nmax_recipients = 4000000000\n",
                "smtp.max_recipients",
            ),
            ("[smtp]\nwrite_timeout = \"0s\"\n", "smtp.write_timeout"),
            ("[pop3]\nauth_lockout = \"400days\"\n", "pop3.auth_lockout"),
            (
                "[outbound]\nblock_timeout = \"9999years\"\n",
                "outbound.block_timeout",
            ),
        ];
        for (extra, key) in cases {
            let err = parse(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let mut cfg = Config::new("example.com", "mx.example.com");
        cfg.queue.retry_schedule = vec![Duration::from_secs(30 * 86400)];
        cfg.queue.expiry = Duration::from_secs(365 * 86400);
        cfg.queue.delay_notification = Duration::from_secs(364 * 86400);
        cfg.validate().unwrap();
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let base = "[server]\nhostname = \"mx.example.com\"\ndomains = [\"example.com\"]\n";
        let cases: &[(&str, &str, &str)] = &[
            (
                "[smtp]\nmax_recipient = 5\n",
                "smtp.max_recipient",
                "unknown field",
            ),
            (
                "[smtp]\nmax_recipients = \"many\"\n",
                "smtp.max_recipients",
                "invalid type",
            ),
            (
                "[smtp]\nmax_recipients = 0\n",
                "smtp.max_recipients",
                "at least 1",
            ),
            (
                "[smtp]\ncommand_timeout = \"soon\"\n",
                "smtp.command_timeout",
                "",
            ),
            ("[smtp]\nlisten = [\"nowhere\"]\n", "smtp.listen", "invalid"),
            (
                "[smtp]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
                "smtp.trusted_networks",
                "",
            ),
            ("[bogus]\n", "bogus", "unknown field"),
            ("[smtp\n", "(file)", ""),
        ];
        for (extra, key, reason) in cases {
            let err = parse(&format!("{base}{extra}")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("mailroom.toml: "), "{msg}");
            let ConfigError::Invalid {
                key: k, reason: r, ..
            } = err
            else {
                panic!()
            };
            assert!(k.starts_with(key), "{extra}: key {k}");
            assert!(r.contains(reason), "{extra}: reason {r}");
        }
        let err = parse("[server]\nhostname = \"bad host\"\ndomains = [\"x.test\"]\n").unwrap_err();
        assert!(err.to_string().contains("server.hostname"));
        let err = parse("[server]\nhostname = \"h.test\"\ndomains = []\n").unwrap_err();
        assert!(err.to_string().contains("server.domains"));
    }
}
