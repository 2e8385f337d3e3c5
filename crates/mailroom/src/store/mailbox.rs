//! The mailbox part of the store: what users read.

use super::StoreFuture;

/// The messages in users' mailboxes, as POP3 reads them.
pub trait Mailboxes: Send + Sync {
    /// The messages in a user's INBOX, in delivery order.
    fn mailbox_list(&self, user_id: i64) -> StoreFuture<'_, Vec<MailEntry>>;
    /// A message as delivered (prefix and content).
    fn mail_read(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, Vec<u8>>;
    /// A message as delivered, as a text to stream (its spool file is read as it is sent).
    fn mail_text(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, super::StoredText>;
    /// Deletes messages from a user's mailbox; returns how many were deleted.
    fn mail_delete(&self, user_id: i64, mail_ids: Vec<i64>) -> StoreFuture<'_, usize>;
    /// Puts a message into a user's INBOX as it is (a mailbox moving here), not counted against
    /// the quota; `key` makes it idempotent: a second import with the same key does nothing and
    /// returns false.
    fn mail_import(&self, user_id: i64, text: Vec<u8>, key: String) -> StoreFuture<'_, bool>;
}

/// A message in a mailbox, as POP3 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailEntry {
    /// Store ID.
    pub id: i64,
    /// Size in octets as delivered (prefix and content).
    pub size: u64,
    /// A unique, permanent identifier (POP3 UIDL, RFC 1939 §7).
    pub uidl: String,
}
