//! mailroom: an organization mail server.
//!
//! The modules follow a message's path: [`receive`] (SMTP in) → [`ingest`] (trace headers,
//! recipient resolution, durable submission) → [`queue`] (state and the delivery manager) →
//! [`route`] → [`deliver`] (local mailboxes) → [`dsn`] (delivery reports). Beside the path:
//! [`track`] (message tracking), [`config`], [`directory`] (users, aliases, lists), [`store`]
//! (the storage engines), [`pop3`] (mailbox access), [`tls`] (certificates and TLS sessions), [`admin`] (the operator's operations) and
//! [`cli`].
#![forbid(unsafe_code)]
// A slice of a string at a byte index panics inside a character: text that peers and files
// control is cut with `split_once`, `strip_prefix` or `get` instead (issue 21: a folder name).
#![deny(clippy::string_slice)]

pub mod admin;
pub mod cli;
pub mod client;
/// The configuration lives in its own crate (`crates/config`), which the fuzz targets build
/// without the server; it is re-exported here so that `crate::config::…` reads as one tree.
pub use mailroom_config as config;
pub mod conn;
pub mod control;
pub mod deliver;
pub mod directory;
pub mod dkim;
pub mod doctor;
pub mod dsn;
pub mod fsutil;
pub mod ids;
pub mod imap;
pub mod ingest;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod org;
pub mod org_service;
pub mod pop3;
pub mod queue;
pub mod receive;
pub mod repair;
pub mod route;
pub mod sender_auth;
pub mod server;
pub mod services;
pub mod store;
pub mod tls;
pub mod track;

#[cfg(test)]
pub(crate) mod testutil;
