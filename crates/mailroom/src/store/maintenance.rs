//! What `doctor` and `repair` ask of the store: its integrity, and checksums that prove a repair
//! left every mailbox and every queued message as it was.

use serde::Serialize;

use super::StoreFuture;

/// Checksums of the mail a repair must never touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksums {
    /// SHA-256 over every message in every mailbox: owner, folder, UIDs, dates, and the bytes.
    pub mailboxes: String,
    /// Messages in mailboxes.
    pub mailbox_messages: u64,
    /// SHA-256 over every queued message and recipient, with the message's bytes.
    pub queue: String,
    /// Messages queued.
    pub queued_messages: u64,
}

/// A recipient that failed (event 2001), for `doctor`'s NDR summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedRecipient {
    /// When.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The recipient.
    pub recipient: String,
    /// The enhanced status code.
    pub status: String,
    /// Why, in words.
    pub detail: String,
}

/// One hash per mailbox message (by its id) and per queued message (by its queue ID, with its
/// envelope, recipients and bytes), so that two readings can be compared message by message:
/// a running server delivers and removes mail while a repair runs, and what must not change is
/// every message present in both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailDigests {
    /// Mailbox messages.
    pub mailboxes: std::collections::BTreeMap<String, String>,
    /// Queued messages.
    pub queue: std::collections::BTreeMap<String, String>,
}

impl MailDigests {
    /// The checksums of everything in it.
    pub fn checksums(&self) -> Checksums {
        let all = |m: &std::collections::BTreeMap<String, String>| {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for (k, v) in m {
                h.update(k.as_bytes());
                h.update(b"\0");
                h.update(v.as_bytes());
                h.update(b"\n");
            }
            hex::encode(h.finalize())
        };
        Checksums {
            mailboxes: all(&self.mailboxes),
            mailbox_messages: self.mailboxes.len() as u64,
            queue: all(&self.queue),
            queued_messages: self.queue.len() as u64,
        }
    }

    /// The keys present in both readings whose hashes differ (mail that was changed, not
    /// added or removed).
    pub fn changed_since(&self, before: &MailDigests) -> Vec<String> {
        let diff = |a: &std::collections::BTreeMap<String, String>,
                    b: &std::collections::BTreeMap<String, String>,
                    what: &str| {
            a.iter()
                .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
                .map(|(k, _)| format!("{what} {k}"))
                .collect::<Vec<_>>()
        };
        let mut out = diff(&self.mailboxes, &before.mailboxes, "mailbox message");
        out.extend(diff(&self.queue, &before.queue, "queued message"));
        out
    }
}

/// Integrity and checksums.
pub trait Maintenance: Send + Sync {
    /// The engine's own consistency check: empty when sound, else what it found.
    fn integrity(&self) -> StoreFuture<'_, Vec<String>>;
    /// The hashes of every mailbox message and queued message, read in one snapshot. An engine
    /// whose message text can never be rewritten hashes the content a message names rather
    /// than its octets (the embedded one: a trigger refuses the rewrite), so the cost is a row
    /// per message, not the store's size.
    fn mail_digests(&self) -> StoreFuture<'_, MailDigests>;
    /// Recipients that failed since `since`, newest first, at most `limit`.
    fn failures_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<FailedRecipient>>;
}
