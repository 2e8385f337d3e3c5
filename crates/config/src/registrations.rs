//! The registrations kept in the config store: which ESMTP extensions the SMTP service offers
//! and which services the server runs, with what. These are the "metabase entries" of the seed:
//! when one is lost the server still starts, but offers or runs less, exactly like the seed's
//! server whose verbs had gone. `mailroom doctor` compares them with what a healthy server has
//! and `mailroom repair` puts back what is missing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The ESMTP extensions a standard mailroom server registers, in EHLO order. The organization
/// requires the `X-ORG-*` verbs and `X-LINKSTATE` of every member.
pub const STANDARD_EXTENSIONS: &[&str] = &[
    "SIZE",
    "PIPELINING",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "CHUNKING",
    "STARTTLS",
    "AUTH",
    "X-ORG-AUTH",
    "X-LINKSTATE",
    "X-ORG-META",
    "X-ORG-TRACK",
    "X-ORG-MOVE",
];

/// The extensions without which a server cannot take part in an organization.
pub const ORG_EXTENSIONS: &[&str] = &[
    "X-ORG-AUTH",
    "X-LINKSTATE",
    "X-ORG-META",
    "X-ORG-TRACK",
    "X-ORG-MOVE",
];

/// The services of a server, in start order. Each is implemented by the built-in component of
/// the same name.
pub const SERVICES: &[&str] = &[
    "queue-manager",
    "routing-engine",
    "local-delivery",
    "smtp-send",
    "link-state",
    "smtp-receive",
    "submission",
    "pop3",
    "imap",
];

/// Components of older designs that a current server must not define (the seed's leftover
/// `MSExchangeIMC` key), with why.
pub const RETIRED_SERVICES: &[(&str, &str)] = &[(
    "imc",
    "the Internet Mail Connector (MSExchangeIMC) of Exchange 5.5; its work is smtp-send's, and \
     a definition of it is a leftover of an older installation",
)];

/// `[services.NAME]`: one service's definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// Whether the server runs it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The component that implements it (the service's own name). A definition naming
    /// another component fails to start, saying so (Exchange's "Error 1083").
    pub runs: String,
}

fn yes() -> bool {
    true
}

/// The definitions of a standard server.
pub fn standard_services() -> BTreeMap<String, ServiceDef> {
    SERVICES
        .iter()
        .map(|s| {
            (
                s.to_string(),
                ServiceDef {
                    enabled: true,
                    runs: s.to_string(),
                },
            )
        })
        .collect()
}

/// The standard extension registrations.
pub fn standard_extensions() -> Vec<String> {
    STANDARD_EXTENSIONS.iter().map(|s| s.to_string()).collect()
}

/// `[supervisor]`: how failed services are tried again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// A service that failed to start (its port taken, say) is tried again this often.
    #[serde(with = "humantime_serde")]
    pub restart_interval: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            restart_interval: Duration::from_secs(30),
        }
    }
}

/// `[config]`: the config store itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Versions of the configuration kept (IIS's metabase history keeps 10).
    pub history: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { history: 10 }
    }
}

/// `[log]`: where the log goes and in what form (docs/logging.md). Read when the server starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Where lines go: `stderr` (the default; systemd's journal takes it from there too),
    /// `journald` (the journal's native protocol, each field of a line also a journal field:
    /// `QUEUE_ID`, `CLIENT_ADDR`, …), or `syslog` (`/dev/log`, facility mail).
    pub target: LogTarget,
    /// `text` (one `key=value` line per event) or `json` (one JSON object per line); for
    /// `stderr` only: the journal and syslog carry the text line with its fields.
    pub format: LogFormat,
    /// The socket of `journald` or `syslog` (default `/run/systemd/journal/socket` or
    /// `/dev/log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<std::path::PathBuf>,
}

/// `log.target`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// Standard error.
    #[default]
    Stderr,
    /// systemd's journal, natively.
    Journald,
    /// The system logger, facility mail.
    Syslog,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` text lines.
    #[default]
    Text,
    /// JSON objects, one per line.
    Json,
}

/// `[metrics]`: Prometheus metrics on `/metrics` (docs/metrics.md). Off until `listen` names an
/// address; read when the server starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (`ip:port`); empty: nowhere.
    pub listen: Vec<std::net::SocketAddr>,
    /// A bearer token that every scrape must give (`Authorization: Bearer …`); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}
