//! SMTP protocol pieces: commands, addresses, ESMTP parameters, replies and the DATA/BDAT decoders.
//!
//! - [`command`]: one command line → [`Command`] (RFC 5321 §4.1.1).
//! - [`address`]: reverse and forward paths, mailboxes, domains (RFC 5321 §4.1.2, RFC 6531).
//! - [`params`]: the registered MAIL/RCPT parameters: SIZE (RFC 1870), BODY (RFC 6152),
//!   SMTPUTF8 (RFC 6531), RET/ENVID/NOTIFY/ORCPT (RFC 3461), and xtext.
//! - [`reply`]: replies with basic and enhanced status codes (RFC 3463, RFC 2034).
//! - [`org`]: the organization's verbs (X-ORG-AUTH, X-LINKSTATE, X-ORG-META) and link-state chunks.
//! - [`data`]: the strict end-of-data detector and dot-unstuffer for DATA, and the line checker
//!   shared with BDAT (RFC 3030).

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod org;
pub mod params;
pub mod reply;

pub use address::{Domain, Mailbox, Path, ReversePath};
pub use command::{Command, CommandError};
pub use data::{DataDecoder, DataOutcome, LineFlaws};
pub use params::{Body, DsnRet, MailParams, Notify, OrcptParam, RcptParams};
pub use reply::{Class, Reply, Status};
