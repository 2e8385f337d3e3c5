//! IMAP (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1 and the extensions mailroom offers), without I/O:
//! [`frame`] cuts the octet stream into whole commands (literals included), [`parse`] makes a
//! [`command::Command`] of one, [`mime`] answers FETCH and SEARCH from a message's octets,
//! [`encode`] writes strings, and [`mutf7`] converts mailbox names.
//!
//! Why our own parser rather than imap-codec 1.0: mailroom offers LIST-EXTENDED (RFC 5258),
//! ESEARCH (RFC 4731), CONDSTORE/QRESYNC (RFC 7162), LITERAL- and literal8, which imap-codec 1.0
//! parses in part or not at all, and every malformed command must get a `BAD` that says what is
//! wrong and where. The grammar is a few hundred lines; owning them keeps the limits (line,
//! literal, nesting depth) enforced while parsing, tested in tables and fuzzed.

pub mod command;
pub mod encode;
pub mod frame;
pub mod mime;
pub mod mutf7;
pub mod parse;
pub mod section;
pub mod sort;
