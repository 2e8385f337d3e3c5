//! The mailbox part of the store: what users read.

use super::StoreFuture;

/// The messages in users' mailboxes, as POP3 reads them.
pub trait Mailboxes: Send + Sync {
    /// The messages in a user's INBOX, in delivery order.
    fn mailbox_list(&self, user_id: i64) -> StoreFuture<'_, Vec<MailEntry>>;
    /// A message as delivered (prefix and content).
    fn mail_read(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, Vec<u8>>;
    /// Several messages as delivered, in one read (FETCH and SEARCH over many messages): each
    /// `None` when it is gone.
    fn mail_read_many(
        &self,
        user_id: i64,
        mail_ids: Vec<i64>,
    ) -> StoreFuture<'_, Vec<Option<Vec<u8>>>>;
    /// A message as delivered, as a text to stream (its spool file is read as it is sent).
    fn mail_text(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, super::StoredText>;
    /// Deletes messages from a user's mailbox; returns how many were deleted.
    fn mail_delete(&self, user_id: i64, mail_ids: Vec<i64>) -> StoreFuture<'_, usize>;
    /// Puts a message into a user's folder as it is (a mailbox moving here), not counted against
    /// the quota, making the folder if it is missing; `key` makes it idempotent: a second import
    /// with the same key does nothing and returns false.
    fn mail_import(
        &self,
        user_id: i64,
        text: Vec<u8>,
        key: String,
        place: Placement,
    ) -> StoreFuture<'_, bool>;
    /// Every message of a user, in every folder, with its IMAP state (to move the mailbox).
    fn mail_all(&self, user_id: i64) -> StoreFuture<'_, Vec<StoredMail>>;
}

/// Where and how an imported message goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// The folder; `None` is the INBOX.
    pub folder: Option<String>,
    /// The folder's special use, if it must be made.
    pub special_use: Option<String>,
    /// System flags ([`super::flag`] bits).
    pub flags: u8,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Internal date (microseconds since the epoch); `None`: now.
    pub internal_date: Option<i64>,
}

/// A message in some folder of a mailbox, as `user move` sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMail {
    /// Store ID.
    pub id: i64,
    /// A unique, permanent identifier (the POP3 UIDL in the INBOX).
    pub uidl: String,
    /// Where it is and its state.
    pub place: Placement,
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
