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

/// Integrity and checksums.
pub trait Maintenance: Send + Sync {
    /// The engine's own consistency check: empty when sound, else what it found.
    fn integrity(&self) -> StoreFuture<'_, Vec<String>>;
    /// The checksums of the mailboxes and of the queue, read in one snapshot.
    fn checksums(&self) -> StoreFuture<'_, Checksums>;
    /// Recipients that failed since `since`, newest first, at most `limit`.
    fn failures_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<FailedRecipient>>;
}
