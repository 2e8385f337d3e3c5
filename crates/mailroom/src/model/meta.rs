//! `X-ORG-META`: what travels with a message from one server of the organization to the next,
//! so that tracking, reports and loop detection stay whole across hops (the role of Exchange's
//! XEXCH50).
//!
//! The client sends `X-ORG-META <base64 JSON>` after org authentication and before `MAIL`; it
//! applies to the next transaction only. The DSN parameters themselves travel as RFC 3461
//! parameters on MAIL and RCPT, as to any server.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most servers a message's hop list may name (RFC 5321 §6.3's loop limit is counted from
/// `Received` headers separately; this bounds the metadata itself).
pub const MAX_HOPS: usize = 32;

/// A message's organization metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMeta {
    /// The organization-wide id of the message: the first server's name and queue id. Every
    /// copy has the same one, so that a server that gets a message twice (a shadow resubmitted
    /// while the first copy was in fact delivered) keeps one.
    pub org_id: String,
    /// The first server of the organization that took the message.
    pub origin: String,
    /// Its queue id there.
    pub origin_queue_id: String,
    /// When it arrived at the first server.
    pub arrival: DateTime<Utc>,
    /// The servers of the organization it passed, the sender last.
    pub hops: Vec<String>,
}

impl OrgMeta {
    /// The wire form.
    pub fn encode(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads the wire form; `None` when it is not metadata or names too many hops.
    pub fn decode(s: &str) -> Option<OrgMeta> {
        let json = STANDARD.decode(s.trim()).ok()?;
        let m: OrgMeta = serde_json::from_slice(&json).ok()?;
        (m.hops.len() <= MAX_HOPS && !m.org_id.is_empty()).then_some(m)
    }

    /// True when `server` is already on the message's path: sending it there again is a loop.
    pub fn passed(&self, server: &str) -> bool {
        self.hops.iter().any(|h| h.eq_ignore_ascii_case(server))
    }
}

/// `X-ORG-MOVE USER`: the user whose mailbox moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveUser {
    /// The address.
    pub address: String,
    /// The stored credential (the Argon2id PHC string, then its SCRAM-SHA-256 secret: see
    /// `directory::password`), if it has one, carried as it is.
    pub password: Option<String>,
    /// The quota; set when `finish` (the mailbox is moved first, without a quota to refuse it).
    pub quota: Option<u64>,
    /// True once every message is across.
    pub finish: bool,
}

/// `X-ORG-MOVE MAIL`: the next message of a moving mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveMail {
    /// A key unique to this copy (source server, address, message): a copy sent twice (a move
    /// run again after a failure) is imported once.
    pub key: String,
    /// The folder it is in (made on the new server if missing); absent from servers before
    /// IMAP: the INBOX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// The folder's special use (`\Sent`, …), so that the new server's folder gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_use: Option<String>,
    /// IMAP system flags (the store's bits) and keywords.
    #[serde(default)]
    pub flags: u8,
    /// Keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// The internal date, in microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_date: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let m = OrgMeta {
            org_id: "a.test/Q1".into(),
            origin: "a.test".into(),
            origin_queue_id: "Q1".into(),
            arrival: Utc::now(),
            hops: vec!["a.test".into()],
        };
        assert_eq!(OrgMeta::decode(&m.encode()), Some(m.clone()));
        assert!(m.passed("A.test") && !m.passed("b.test"));
        assert_eq!(OrgMeta::decode("not base64!"), None);
        let mut long = m;
        long.hops = vec!["x".into(); MAX_HOPS + 1];
        assert_eq!(OrgMeta::decode(&long.encode()), None);
    }
}
