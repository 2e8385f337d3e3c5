//! Pure protocol code for mailroom: SMTP (RFC 5321 and its extensions), POP3 (RFC 1939), the
//! messages of SCRAM (RFC 5802) and the
//! removal of forged `Authentication-Results` fields (RFC 8601 §5).
//!
//! Nothing here performs I/O or depends on an async runtime: every parser takes bytes and returns
//! values, so the same code serves the SMTP server, the future SMTP client, the tests and the fuzzers.
//! Incremental decoders (DATA, command lines) report how much input they consumed and never block.
//!
//! Why our own parser rather than `smtp-proto`: mailroom needs a specific, documented reply for every
//! malformed input (including the relay tricks of RFC 5321 §3.6 and the bare-CR/LF "SMTP smuggling"
//! patterns), configurable limits enforced while parsing, and DSN parameters carried verbatim. Those
//! rules are the product; owning the few hundred lines that implement them keeps them testable in
//! tables and fuzzable in isolation.
#![forbid(unsafe_code)]
// A slice of a string at a byte index panics inside a character: text that peers and files
// control is cut with `split_once`, `strip_prefix` or `get` instead (issue 21: a folder name).
#![deny(clippy::string_slice)]
#![warn(missing_docs)]

pub mod check;
pub mod header;
pub mod imap;
pub mod line;
pub mod pop3;
pub mod results;
pub mod sasl;
pub mod scram;
pub mod smtp;
