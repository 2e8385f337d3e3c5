//! The configuration file (`DATA/mailroom.toml`): types, defaults, loading and validation.
//!
//! Every limit the server enforces is here, with its default and the RFC it comes from. Loading
//! refuses unknown keys and bad values and says which file, which key and why, so a typo never
//! silently becomes a default. [`template`] writes the commented file that `mailroom init` creates.

mod template;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use template::template;

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

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity of this server.
    pub server: ServerConfig,
    /// SMTP receive.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// POP3 access.
    #[serde(default)]
    pub pop3: Pop3Config,
    /// Queue and delivery.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Outbound SMTP.
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// DNS resolution for outbound mail.
    #[serde(default)]
    pub dns: DnsConfig,
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
}

/// `[smtp]`: the receive service and its limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
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
    /// Errors in one session after which the server says 421 and disconnects.
    pub max_errors: u32,
    /// Waiting for a command (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Waiting for the next block of message text (RFC 5321 §4.5.3.2.5: 3 minutes for the client;
    /// the server's own limit is this).
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    /// Most `Received` headers a message may already carry (a loop, RFC 5321 §6.3: `554 5.4.6`).
    pub max_received_headers: usize,
    /// Networks whose clients may relay to non-local domains. Default: none.
    pub trusted_networks: Vec<IpNet>,
    /// How a recipient whose mailbox is already full is refused at RCPT.
    pub full_mailbox: FullMailbox,
    /// Message texts larger than this (octets) are written to a spool file as they arrive
    /// instead of being held in memory; smaller ones are stored in the database.
    pub spool_threshold: usize,
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
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_text_line: 1000,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_received_headers: 15,
            trusted_networks: Vec::new(),
            full_mailbox: FullMailbox::Temporary,
            spool_threshold: 128 * 1024,
        }
    }
}

/// `[pop3]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
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
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2110))],
            auth_failure_delay: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(600),
            max_connections: 500,
            max_auth_failures: 3,
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
            },
            smtp: SmtpConfig::default(),
            pop3: Pop3Config::default(),
            queue: QueueConfig::default(),
            outbound: OutboundConfig::default(),
            dns: DnsConfig::default(),
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

    /// Checks values that the types alone cannot.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        use mailroom_proto::smtp::Domain;
        if self.server.hostname.is_empty() || Domain::parse(&self.server.hostname).is_err() {
            return Err((
                "server.hostname",
                format!("{:?} is not a valid host name", self.server.hostname),
            ));
        }
        if self.server.domains.is_empty() {
            return Err((
                "server.domains",
                "at least one local domain is required".into(),
            ));
        }
        for d in &self.server.domains {
            if Domain::parse(d).is_err() || d.starts_with('[') {
                return Err(("server.domains", format!("{d:?} is not a valid domain")));
            }
        }
        let s = &self.smtp;
        if s.listen.is_empty() {
            return Err(("smtp.listen", "at least one address is required".into()));
        }
        if s.max_recipients < 1 {
            return Err((
                "smtp.max_recipients",
                "must be at least 1 (RFC 5321 asks for 100)".into(),
            ));
        }
        if s.max_command_line < 512 {
            return Err((
                "smtp.max_command_line",
                "must be at least 512 (RFC 5321 §4.5.3.1.4)".into(),
            ));
        }
        if s.max_text_line < 1000 {
            return Err((
                "smtp.max_text_line",
                "must be at least 1000 (RFC 5321 §4.5.3.1.6)".into(),
            ));
        }
        if s.max_message_size < 1024 {
            return Err((
                "smtp.max_message_size",
                "must be at least 1024 octets".into(),
            ));
        }
        if s.max_connections < 1 {
            return Err(("smtp.max_connections", "must be at least 1".into()));
        }
        if s.max_connections_per_ip < 1 {
            return Err(("smtp.max_connections_per_ip", "must be at least 1".into()));
        }
        if s.max_errors < 1 {
            return Err(("smtp.max_errors", "must be at least 1".into()));
        }
        if s.command_timeout.is_zero() {
            return Err(("smtp.command_timeout", "must be greater than zero".into()));
        }
        if s.data_timeout.is_zero() {
            return Err(("smtp.data_timeout", "must be greater than zero".into()));
        }
        if !(4096..=16 << 20).contains(&s.spool_threshold) {
            return Err((
                "smtp.spool_threshold",
                "must be between 4096 and 16777216 octets".into(),
            ));
        }
        if s.max_received_headers < 1 {
            return Err(("smtp.max_received_headers", "must be at least 1".into()));
        }
        if self.pop3.listen.is_empty() {
            return Err(("pop3.listen", "at least one address is required".into()));
        }
        if self.pop3.max_connections < 1 {
            return Err(("pop3.max_connections", "must be at least 1".into()));
        }
        if self.pop3.max_auth_failures < 1 {
            return Err(("pop3.max_auth_failures", "must be at least 1".into()));
        }
        let q = &self.queue;
        if q.delivery_concurrency < 1 {
            return Err(("queue.delivery_concurrency", "must be at least 1".into()));
        }
        if q.retry_schedule.is_empty() || q.retry_schedule.iter().any(|d| d.is_zero()) {
            return Err((
                "queue.retry_schedule",
                "needs at least one wait, each greater than zero".into(),
            ));
        }
        if !(0.0..=0.5).contains(&q.retry_jitter) {
            return Err(("queue.retry_jitter", "must be between 0 and 0.5".into()));
        }
        for (key, d) in [
            ("queue.expiry", q.expiry),
            ("queue.poll_interval", q.poll_interval),
            ("queue.glitch_retry", q.glitch_retry),
        ] {
            if d.is_zero() {
                return Err((key, "must be greater than zero".into()));
            }
        }
        if q.delay_notification >= q.expiry {
            return Err((
                "queue.delay_notification",
                "must be shorter than queue.expiry".into(),
            ));
        }
        let o = &self.outbound;
        for (key, hop) in o
            .smart_host
            .iter()
            .map(|h| ("outbound.smart_host", h))
            .chain(o.smart_hosts.values().map(|h| ("outbound.smart_hosts", h)))
        {
            if crate::route::parse_host_port(hop, 25).is_none() {
                return Err((key, format!("{hop:?} is not host:port")));
            }
        }
        for (key, n) in [
            (
                "outbound.max_messages_per_connection",
                o.max_messages_per_connection as usize,
            ),
            ("outbound.max_connections", o.max_connections),
            (
                "outbound.max_connections_per_domain",
                o.max_connections_per_domain,
            ),
        ] {
            if n < 1 {
                return Err((key, "must be at least 1".into()));
            }
        }
        for (key, d) in [
            ("outbound.connect_timeout", o.connect_timeout),
            ("outbound.command_timeout", o.command_timeout),
            ("outbound.data_timeout", o.data_timeout),
            ("outbound.block_timeout", o.block_timeout),
            ("outbound.data_end_timeout", o.data_end_timeout),
        ] {
            if d.is_zero() {
                return Err((key, "must be greater than zero".into()));
            }
        }
        Ok(())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("mailroom.toml"))
    }

    #[test]
    fn template_parses_to_defaults() {
        let cfg = parse(&template("example.com", "mx.example.com", None, None)).unwrap();
        assert_eq!(cfg, Config::new("example.com", "mx.example.com"));
        let addr: SocketAddr = "127.0.0.1:9925".parse().unwrap();
        let cfg = parse(&template("example.com", "mx.example.com", Some(addr), None)).unwrap();
        assert_eq!(cfg.smtp.listen, vec![addr]);
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
