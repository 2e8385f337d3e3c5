//! Storage: the seam between mailroom's pipeline and its storage engines.
//!
//! One [`Store`] holds the directory (users, aliases, lists), the queue, the mailboxes and the
//! tracking log. They share one engine so that a state change and everything that must happen with
//! it commit together: a local delivery inserts the mailbox copy, settles the recipient and writes
//! event 1028 in one transaction, which is what makes delivery exactly-once across crashes.
//!
//! The embedded engine ([`sqlite`]) is the default; a PostgreSQL engine for the scale-out
//! organization implements the same trait. Every write that the pipeline waits on is durable when
//! its future resolves (`fsync` included), and concurrent writes share commits (group commit).

pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::queue::{NewMessage, QueuedMessage, ReportState, Settle};
use crate::track::{Event, EventBase};

/// A boxed future returned by store methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A storage failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed (disk full, I/O error, locked database…).
    #[error("storage engine: {0}")]
    Engine(String),
    /// The object already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The object does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The request conflicts with the data (for example deleting a user whose mailbox holds mail).
    #[error("{0}")]
    Conflict(String),
    /// Stored data could not be decoded.
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
}

/// A user of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Directory ID.
    pub id: i64,
    /// The address, lower case.
    pub address: String,
    /// Mailbox quota in octets; `None` is unlimited.
    pub quota: Option<u64>,
    /// Octets in the mailbox now.
    pub used: u64,
    /// Messages in the mailbox now.
    pub messages: u64,
}

/// What an address is in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEntry {
    /// A user with a mailbox.
    User(User),
    /// An alias: mail is redirected to the targets.
    Alias(Vec<String>),
    /// A distribution list: mail is expanded to the members (which may be lists).
    List(Vec<String>),
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

/// Which tracking events to return.
#[derive(Debug, Clone, Default)]
pub struct TrackFilter {
    /// A Message-ID (with or without brackets) or a queue ID.
    pub message_id: Option<String>,
    /// An envelope sender.
    pub sender: Option<String>,
    /// A recipient (original or final).
    pub recipient: Option<String>,
    /// Only messages with events at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// The storage engine interface.
pub trait Store: Send + Sync + 'static {
    // --- directory -------------------------------------------------------------------------
    /// Looks up an address (lower case).
    fn lookup(&self, address: &str) -> StoreFuture<'_, Option<DirEntry>>;
    /// The user and password hash for a login name.
    fn user_auth(&self, address: &str) -> StoreFuture<'_, Option<(User, String)>>;
    /// Adds a user with an INBOX. Fails if the address is already a user, alias or list.
    fn user_add(
        &self,
        address: &str,
        password_hash: Option<String>,
        quota: Option<u64>,
    ) -> StoreFuture<'_, i64>;
    /// Deletes a user. Refused if the mailbox holds mail unless `purge`.
    fn user_del(&self, address: &str, purge: bool) -> StoreFuture<'_, ()>;
    /// All users.
    fn user_list(&self) -> StoreFuture<'_, Vec<User>>;
    /// Sets a user's password hash.
    fn user_passwd(&self, address: &str, password_hash: String) -> StoreFuture<'_, ()>;
    /// Sets a user's quota.
    fn user_quota(&self, address: &str, quota: Option<u64>) -> StoreFuture<'_, ()>;
    /// Adds targets to an alias (creating it).
    fn alias_add(&self, alias: &str, targets: Vec<String>) -> StoreFuture<'_, ()>;
    /// Deletes an alias.
    fn alias_del(&self, alias: &str) -> StoreFuture<'_, ()>;
    /// All aliases with their targets.
    fn alias_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>>;
    /// Adds members to a list (creating it).
    fn list_add(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()>;
    /// Removes members from a list, or the whole list when `members` is empty.
    fn list_del(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()>;
    /// All lists with their members.
    fn list_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>>;

    // --- queue -----------------------------------------------------------------------------
    /// Stores a new message with its recipients and events. Durable when it returns.
    fn submit(&self, msg: NewMessage) -> StoreFuture<'_, i64>;
    /// Messages that have recipients in state Ready, oldest first, skipping those at or below
    /// `after` (row ID) and returning at most `limit`.
    fn ready(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<QueuedMessage>>;
    /// One message by row ID, if still queued.
    fn queued(&self, rowid: i64) -> StoreFuture<'_, Option<QueuedMessage>>;
    /// Messages with failures not yet reported.
    fn unreported(&self, limit: usize) -> StoreFuture<'_, Vec<QueuedMessage>>;
    /// The content of a queued message.
    fn content(&self, content_id: i64) -> StoreFuture<'_, Vec<u8>>;
    /// Settles recipients that are still Ready, atomically with their mailbox copies and their
    /// tracking events (1028 delivered, 2001 failed; built from `base`). A local drop that would
    /// exceed the user's quota settles as failed `5.2.2` instead. Recipients already settled are
    /// skipped, which makes a repeated attempt harmless. Removes the message when nothing is left
    /// to do. Returns the state each recipient ended in.
    fn settle(
        &self,
        message: i64,
        base: EventBase,
        results: Vec<(i64, Settle)>,
    ) -> StoreFuture<'_, Vec<(i64, SettledAs)>>;
    /// Records how failures were reported, atomically with the report message (if any) and
    /// events; removes the message when nothing is left to do.
    fn record_reports(
        &self,
        message: i64,
        reports: Vec<(i64, ReportState)>,
        report_message: Option<NewMessage>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, Option<i64>>;

    // --- mailboxes -------------------------------------------------------------------------
    /// The messages in a user's INBOX, in delivery order.
    fn mailbox_list(&self, user_id: i64) -> StoreFuture<'_, Vec<MailEntry>>;
    /// A message as delivered (prefix and content).
    fn mail_read(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, Vec<u8>>;
    /// Deletes messages from a user's mailbox; returns how many were deleted.
    fn mail_delete(&self, user_id: i64, mail_ids: Vec<i64>) -> StoreFuture<'_, usize>;

    // --- tracking --------------------------------------------------------------------------
    /// Writes events on their own (most events are written with the change they describe).
    fn track(&self, events: Vec<Event>) -> StoreFuture<'_, ()>;
    /// Events of the messages that match the filter, in time order.
    fn track_query(&self, filter: TrackFilter) -> StoreFuture<'_, Vec<Event>>;
}

/// The state a recipient ended in after [`Store::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettledAs {
    /// Delivered now.
    Delivered,
    /// Failed now (perhaps converted from delivered by the quota check).
    Failed {
        /// Status.
        status: String,
        /// Reason.
        reason: String,
    },
    /// It was no longer Ready (settled before, for example by an earlier attempt).
    AlreadySettled,
}
